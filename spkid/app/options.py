"""Command-line options shared by the ``spkid`` commands.

* A :class:`~spkid._strict.StrictConfig` dataclass (``FeatureConfig``, ``TrainConfig``) as one
  ``--kebab-name`` option per field, and back (:func:`add_config_arguments`, :func:`config_from_args`,
  :func:`config_to_argv`). The kind of option follows the field's type annotation only: ``bool`` ->
  ``--flag true|false`` (also yes/no, on/off, 1/0); ``Literal`` -> its choices; ``int`` / ``float`` / ``str`` -> that type; tuples,
  lists, dicts and nested configs -> a YAML value (``--gain-db "[-6, 6]"``). Optional fields also take
  ``none``. Every option is optional: one not given keeps the value of the YAML file or the config's
  default, which ``--help`` prints (a ``default_factory`` is called to show it).
* The data options ``--cache DIR | --data ROOT`` (+ ``--layout``, ``--pattern``, ``--feature-config``) and
  :func:`load_split`, which turns them into a :class:`~spkid.data.featuresets.FeatureSet`.
* ``--model`` / ``--gallery`` / ``--index`` of the gallery commands and ``--no-progress``.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

__all__ = [
    "add_config_arguments",
    "config_from_args",
    "config_to_argv",
    "field_default",
    "add_feature_arguments",
    "feature_config_from_args",
    "add_data_arguments",
    "data_argv",
    "load_split",
    "add_gallery_arguments",
    "add_index_argument",
    "add_progress_argument",
]

_NONE = "none"  # the command-line word for None in optional fields
_MISSING = object()


# ------------------------------------------------------------------------------- type annotations
def _union_args(tp) -> tuple:
    """Members of a Union (``X | None`` included), or ``(tp,)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _is_structured(tp) -> bool:
    """Whether values of ``tp`` are given as YAML (tuples, lists, dicts, nested configs)."""
    origin = typing.get_origin(tp) or tp
    return origin in (tuple, list, dict, typing.Mapping) or (isinstance(tp, type) and dataclasses.is_dataclass(tp))


@dataclasses.dataclass(frozen=True)
class _Kind:
    """How one config field appears on the command line."""

    kind: str  # "bool", "choice", "yaml", "scalar"
    optional: bool
    choices: tuple = ()  # Literal values ("choice")
    scalar: type = str  # int, float or str ("scalar")


def _kind(tp) -> _Kind:
    members = [a for a in _union_args(tp) if a is not type(None)]
    optional = len(members) < len(_union_args(tp))
    if members == [bool]:
        return _Kind("bool", optional)
    if members and all(typing.get_origin(a) is typing.Literal for a in members):
        return _Kind("choice", optional, tuple(v for a in members for v in typing.get_args(a)))
    if any(_is_structured(a) for a in members):
        return _Kind("yaml", optional)
    scalar = members[0] if len(members) == 1 and members[0] in (int, float, str) else str
    return _Kind("scalar", optional, scalar=scalar)


def field_default(field: dataclasses.Field) -> Any:
    """A dataclass field's default (a ``default_factory`` is called); ``_MISSING`` when it has none."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return _MISSING


def _plain(value: Any) -> Any:
    """JSON-ready form of a config value (tuples -> lists, configs -> dicts)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _as_text(value: Any, kind: _Kind) -> str:
    """``value`` written the way the option takes it (also what ``--help`` shows as the default)."""
    if value is None:
        return _NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind.kind == "yaml":
        import yaml

        return yaml.safe_dump(_plain(value), default_flow_style=True, sort_keys=False, width=float("inf")).strip()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _option(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _dest(name: str) -> str:
    return f"cfg_{name}"


def _hints(config_cls) -> dict:
    return typing.get_type_hints(config_cls)


# ---------------------------------------------------------------------------- config <-> argparse
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _bool_type(optional: bool):
    """argparse ``type`` of a bool field: true/false (yes/no, on/off, 1/0), and none when optional."""

    def parse(text: str):
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        if optional and word == _NONE:
            return _NONE
        raise argparse.ArgumentTypeError(f"expected true or false{' or none' if optional else ''}, got {text!r}")

    parse.__name__ = "bool"
    return parse


def _scalar_type(kind: _Kind):
    convert = kind.scalar
    if not kind.optional:
        return convert
    return lambda text: _NONE if text.lower() == _NONE else convert(text)


def add_config_arguments(parser: argparse.ArgumentParser, config_cls, title: str | None = None) -> None:
    """One ``--kebab-name`` option per field of ``config_cls`` (in an argument group ``title``); the
    values land in ``args.cfg_<field>``, None when the option was not given."""
    group = parser.add_argument_group(title) if title else parser
    hints = _hints(config_cls)
    for f in dataclasses.fields(config_cls):
        kind = _kind(hints[f.name])
        default = field_default(f)
        shown = "required" if default is _MISSING else _as_text(default, kind)
        help_text = f"(default: {shown})".replace("%", "%%")
        kw: dict[str, Any] = {"dest": _dest(f.name), "default": None, "help": help_text}
        if kind.kind == "bool":
            kw["type"] = _bool_type(kind.optional)
            kw["metavar"] = "{true,false,none}" if kind.optional else "{true,false}"
        elif kind.kind == "choice":
            kw["choices"] = [str(v) for v in kind.choices] + [_NONE] * kind.optional
        elif kind.kind == "yaml":
            kw["metavar"] = "YAML"
        else:
            kw["type"] = _scalar_type(kind)
            kw["metavar"] = f.name.upper()
        group.add_argument(_option(f.name), **kw)


def _from_text(name: str, value: Any, kind: _Kind) -> Any:
    """The config value of one option as argparse left it."""
    from spkid.errors import ConfigError

    if isinstance(value, str) and value.lower() == _NONE and kind.optional:
        return None
    if kind.kind == "choice":
        return next(v for v in kind.choices if str(v) == value)
    if kind.kind == "yaml":
        import yaml

        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{_option(name)}: not valid YAML: {exc}") from None
    return value


def config_from_args(args: argparse.Namespace, config_cls, yaml_path: str | None = None, *, data=None):
    """A ``config_cls``: the YAML file ``yaml_path`` (or the mapping ``data``; optional) overridden by the
    options that were given; wrong values raise :class:`~spkid.errors.ConfigError` naming the field."""
    from spkid._strict import load_yaml_config

    data = dict(data) if data is not None else load_yaml_config(yaml_path) if yaml_path else {}
    hints = _hints(config_cls)
    for f in dataclasses.fields(config_cls):
        value = getattr(args, _dest(f.name), None)
        if value is not None:
            data[f.name] = _from_text(f.name, value, _kind(hints[f.name]))
    return config_cls.from_dict(data)


def config_to_argv(config, *, all_fields: bool = False) -> list[str]:
    """Options that :func:`config_from_args` turns back into ``config`` (only the fields that differ
    from their defaults, unless ``all_fields``)."""
    hints = _hints(type(config))
    argv: list[str] = []
    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), _kind(hints[f.name])
        if not all_fields and _plain(value) == _plain(field_default(f)):
            continue
        argv += [_option(f.name), _as_text(value, kind)]
    return argv


# ---------------------------------------------------------------------------------- feature options
def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """``--feature-config YAML`` and one option per :class:`~spkid.features.config.FeatureConfig` field."""
    from spkid.features.config import FeatureConfig

    parser.add_argument("--feature-config", metavar="YAML", help="FeatureConfig fields from a YAML file")
    add_config_arguments(parser, FeatureConfig, "feature options (override --feature-config)")


def feature_config_from_args(args: argparse.Namespace):
    """The FeatureConfig of :func:`add_feature_arguments`' options."""
    from spkid.features.config import FeatureConfig

    return config_from_args(args, FeatureConfig, args.feature_config)


# ------------------------------------------------------------------------------------- data options
_DATA_OPTIONS = ("cache", "waves", "data", "layout", "pattern", "feature_config")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cache DIR`` | ``--waves DIR`` | ``--data ROOT`` (+ ``--layout``, ``--pattern``, ``--feature-config``)."""
    from spkid.data.layouts.registry import LAYOUTS

    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--cache", metavar="DIR", help="feature cache built by `spkid prepare`")
    src.add_argument("--data", metavar="ROOT", help="dataset folder, scanned and featurised now")
    src.add_argument("--waves", metavar="DIR", help="waveform store built by `spkid prepare --waves`: crops are "
                     "read, augmented (waveform_augment) and featurised while training")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="dataset layout for --data (default: detect)")
    parser.add_argument("--pattern", help="file-name regex or preset (fsdd, librispeech) for --data")
    parser.add_argument("--feature-config", metavar="YAML", help="FeatureConfig for --data (default: defaults)")


def data_argv(args: argparse.Namespace) -> list[str]:
    """The data options of ``args`` as command-line arguments again (e.g. for a relaunch)."""
    argv: list[str] = []
    for name in _DATA_OPTIONS:
        if getattr(args, name, None) is not None:
            argv += [_option(name), str(getattr(args, name))]
    return argv


def load_split(args: argparse.Namespace, split: str, *, feature_config=None, speakers=None, feature_overrides=None,
               progress=True):
    """The utterances of ``split`` named by the data options in ``args`` as a FeatureSet, or a WaveSet for
    ``--waves`` (None if there are none). Without a ``feature_config``, ``--data`` and ``--waves`` are
    featurised with ``feature_overrides`` (a recipe's ``features:``) under ``--feature-config YAML``'s fields
    (at the wave store's rate unless they name one); a ``--cache`` keeps its own features, and overrides it
    does not already hold are a ConfigError saying how to rebuild it."""
    from spkid._strict import load_yaml_config
    from spkid.data.featuresets import load_feature_set
    from spkid.errors import ConfigError
    from spkid.features.config import FeatureConfig

    overrides = dict(feature_overrides or {})
    if args.feature_config:
        overrides.update(load_yaml_config(args.feature_config))
    if not args.cache and feature_config is None and overrides:
        base = {}
        if getattr(args, "waves", None):
            from spkid.data.waves import WaveStore

            base["sr"] = WaveStore(args.waves).sr
        feature_config = FeatureConfig.from_dict({**base, **overrides})
    if getattr(args, "waves", None):
        from spkid.data.wavesampler import load_wave_set

        return load_wave_set(args.waves, split, feature_config=feature_config, speakers=speakers)
    data = load_feature_set(split, cache=args.cache, data=args.data, layout=args.layout, pattern=args.pattern,
                            feature_config=feature_config, speakers=speakers, progress=progress)
    if args.cache and data is not None and feature_overrides:
        have = data.feature_config
        want = FeatureConfig.from_dict({**have.to_dict(), **feature_overrides})
        if want != have:
            raise ConfigError(f"the recipe's features {dict(feature_overrides)} differ from the feature cache's "
                              f"({args.cache}: {have}); rebuild it with `spkid prepare ... --feature-config YAML` "
                              f"holding them, or train from --waves / --data")
    return data


# ------------------------------------------------------------------------------------ other options
def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_gallery_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--gallery``, ``--no-progress`` of the gallery commands (enroll, identify)."""
    parser.add_argument("--model", required=True, metavar="CKPT_OR_ONNX",
                        help="run directory, checkpoint .json / state file (torch or keras), or exported .onnx")
    parser.add_argument("--gallery", required=True, metavar="G",
                        help="gallery: G.db (SQLite: each change a durable transaction, shared by processes) or "
                             "G (the older G.json + G.npz pair, rewritten whole)")
    add_index_argument(parser)
    add_progress_argument(parser)


def add_index_argument(parser: argparse.ArgumentParser) -> None:
    """``--index {auto,exact,speakers,pq}``: how a gallery is searched (:mod:`spkid.search.live_index`)."""
    from spkid.search.live_index import INDEXES

    parser.add_argument("--index", choices=INDEXES, default="auto",
                        help="gallery search: auto (exact on small galleries, approximate above 20k utterances), "
                             "exact, speakers (PQ over speaker centroids) or pq (PQ over utterances)")
