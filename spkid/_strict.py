"""Strict, frozen configuration dataclasses: the base every spkid config and model spec derives from.

Every config in spkid derives from :class:`StrictConfig`: it is a frozen dataclass, ``from_dict`` rejects
unknown keys and wrong types with a :class:`~spkid.errors.ConfigError` that names the key, and each
subclass validates its values in ``__post_init__``. Configs round-trip through plain dicts (``to_dict``)
and YAML, so they can be stored next to caches, checkpoints and galleries.
"""
from __future__ import annotations

import dataclasses
import decimal
import json
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from spkid.errors import ConfigError

__all__ = ["StrictConfig", "load_yaml_config", "round_half_up"]


def _is_instance(value: Any, tp: Any) -> bool:
    """isinstance for the small set of annotations spkid configs use."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (tuple,):
        args = typing.get_args(tp)
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_is_instance(v, args[0]) for v in value)
        return len(args) == len(value) and all(_is_instance(v, a) for v, a in zip(value, args))
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type) and issubclass(tp, StrictConfig):
        return isinstance(value, (tp, Mapping))
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _coerce(value: Any, tp: Any) -> Any:
    """Coerce lists to tuples, ints to floats and nested dicts to nested configs, after type checking."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(tp):
            if a is not type(None) and _is_instance(value, a):
                return _coerce(value, a)
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if tp is float and isinstance(value, int):
        return float(value)
    if isinstance(tp, type) and issubclass(tp, StrictConfig) and isinstance(value, Mapping):
        return tp.from_dict(value)
    return value


@dataclasses.dataclass(frozen=True)
class StrictConfig:
    """Base class: frozen, typed, strict about keys. Subclasses add fields and a ``validate`` method."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            tp = hints[f.name]
            if not _is_instance(value, tp):
                raise ConfigError(
                    f"{type(self).__name__}.{f.name}: expected {_type_name(tp)}, got {value!r}"
                )
            try:
                object.__setattr__(self, f.name, _coerce(value, tp))
            except OverflowError:  # e.g. an int too large for a float field
                raise ConfigError(f"{type(self).__name__}.{f.name}: {value!r:.60} is out of range") from None
        try:
            self.validate()
        except ArithmeticError as exc:  # overflow (or decimal.InvalidOperation) computing from huge values
            raise ConfigError(f"{type(self).__name__}: impossible values ({type(exc).__name__}: {exc})") from None

    def validate(self) -> None:  # pragma: no cover - overridden
        """Raise ConfigError on impossible values. Called after type checks."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None, **overrides: Any):
        """Build from a mapping (None: the defaults); anything else, unknown keys, wrong types and impossible
        values raise ConfigError naming the class (and the valid keys, for unknown ones)."""
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}: expected a mapping of field values, got {type(data).__name__}")
        merged = dict(data or {})
        merged.update(overrides)
        valid = cls.field_names()
        unknown = sorted(set(merged) - set(valid), key=repr)
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(valid)}"
            )
        try:
            return cls(**merged)
        except TypeError as exc:  # e.g. a missing required field
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    def replace(self, **changes: Any):
        """A copy with some fields changed (validated like ``from_dict``)."""
        return type(self).from_dict(self.to_dict(), **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (tuples become lists, nested configs become dicts)."""

        def plain(v: Any) -> Any:
            if isinstance(v, StrictConfig):
                return v.to_dict()
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            if isinstance(v, Mapping):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        """One-line human description, used in 'built with another config' errors."""
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def round_half_up(x: float) -> int:
    """Seconds x rate -> samples, rounding halves up like python_speech_features (0.5 -> 1), not
    Python's banker's rounding. The one rule for frame lengths in spkid."""
    return int(decimal.Decimal(x).to_integral_value(rounding=decimal.ROUND_HALF_UP))  # no precision limit


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (safe loader) and return it; errors name the file."""
    import yaml

    from spkid.fileio import read_file_bytes

    p = Path(path)
    try:
        text = read_file_bytes(p, "config file", ConfigError).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config: not UTF-8 text ({exc.reason} at byte {exc.start})", path=p) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=p) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at top level, got {type(data).__name__}", path=p)
    return data
