"""spkid.app.options: StrictConfig dataclasses as command-line options and back, generically.

Bools, Literal choices, optional fields and YAML-valued fields are told apart by the type annotation
alone; every default is printable; options -> config -> options round-trips; commands never import
each other.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path

import pytest

from spkid._strict import StrictConfig
from spkid.app.options import add_config_arguments, add_data_arguments, config_from_args, config_to_argv, data_argv
from spkid.errors import ConfigError
from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Toy(StrictConfig):
    """Field names that mean nothing to the option builder: only the annotations decide."""

    shiny: bool = False
    loud: bool = True
    maybe: bool | None = None
    level: typing.Literal[1, 2, 3] = 2
    mode: typing.Literal["a", "b"] | None = "a"
    size: int = 3
    ratio: float | None = None
    label: str = "x"
    span: tuple[float, float] | None = None
    sizes: tuple[int, ...] = dataclasses.field(default_factory=lambda: (1, 2))
    extra: dict = dataclasses.field(default_factory=dict)


def _parser(*classes) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t", exit_on_error=False)
    for cls in classes:
        add_config_arguments(parser, cls, f"{cls.__name__} options")
    return parser


def _parse(cls, argv, yaml_path=None):
    return config_from_args(_parser(cls).parse_args(argv), cls, yaml_path)


@pytest.mark.parametrize("argv,field,value", [
    (["--shiny", "true"], "shiny", True), (["--shiny", "false"], "shiny", False),
    (["--loud", "false"], "loud", False), (["--loud", "true"], "loud", True),
    (["--loud", "No"], "loud", False), (["--shiny", "1"], "shiny", True),
    (["--maybe", "true"], "maybe", True), (["--maybe", "false"], "maybe", False), (["--maybe", "none"], "maybe", None),
    ([], "shiny", False), ([], "loud", True),
])
def test_bools_are_told_by_their_annotation_and_work_both_ways(argv, field, value):
    assert getattr(_parse(Toy, argv), field) is value


def test_train_config_bool_works_both_ways():
    assert _parse(TrainConfig, ["--mixed-precision", "true"]).mixed_precision is True
    assert _parse(TrainConfig, ["--mixed-precision", "false"]).mixed_precision is False
    assert _parse(TrainConfig, []).mixed_precision is False


@pytest.mark.parametrize("argv", [["--shiny", "maybe"], ["--shiny", "none"], ["--level", "4"], ["--mode", "c"]])
def test_bad_values_are_refused_by_argparse(argv):
    with pytest.raises(argparse.ArgumentError):
        _parser(Toy).parse_args(argv)


def test_choices_optional_scalars_and_yaml_values():
    c = _parse(Toy, ["--level", "3", "--mode", "none", "--ratio", "0.5", "--size", "7", "--label", "hello",
                     "--span", "[-6, 6]", "--sizes", "[4]", "--extra", "{a: {b: [1, 2]}}"])
    assert (c.level, c.mode, c.ratio, c.size, c.label) == (3, None, 0.5, 7, "hello")
    assert c.span == (-6.0, 6.0) and c.sizes == (4,) and c.extra == {"a": {"b": [1, 2]}}
    assert _parse(Toy, ["--span", "none", "--ratio", "none"]).span is None


def test_invalid_yaml_names_the_option():
    with pytest.raises(ConfigError, match=r"--gain-db: not valid YAML"):
        _parse(TrainConfig, ["--gain-db", "[3, -3"])


def test_yaml_file_is_overridden_by_options(tmp_path):
    (tmp_path / "t.yaml").write_text("epochs: 3\nlr: 0.01\nmixed_precision: true\n")
    c = _parse(TrainConfig, ["--lr", "0.5", "--mixed-precision", "false"], tmp_path / "t.yaml")
    assert (c.epochs, c.lr, c.mixed_precision) == (3, 0.5, False)


@pytest.mark.parametrize("cls", [Toy, FeatureConfig, TrainConfig])
def test_every_default_is_printable(cls):
    text = _parser(cls).format_help()
    assert "_MISSING_TYPE" not in text and "object at 0x" not in text and "<" not in text
    for f in dataclasses.fields(cls):
        option = "--" + f.name.replace("_", "-")
        assert re.search(rf"{option}\b[^\n]*\n?[^\n]*\(default: [^)]", text), option


def test_default_factories_are_shown_by_their_value():
    text = " ".join(_parser(Toy, ).format_help().split())
    assert "--sizes YAML (default: [1, 2])" in text and "--extra YAML (default: {})" in text
    assert "--shiny {true,false} (default: false)" in text and "--maybe {true,false,none} (default: none)" in text
    train = " ".join(_parser(TrainConfig).format_help().split())
    assert "--model-overrides YAML (default: {})" in train


def test_spkid_train_help_prints_every_default(capsys):
    from spkid.app.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "_MISSING_TYPE" not in out and "--model-overrides" in out and "(default: {})" in out


ROUND_TRIPS = [
    Toy(),
    Toy(shiny=True, loud=False, maybe=False, level=1, mode=None, size=0, ratio=1e-6, label="a b",
        span=(1e-6, 2.5), sizes=(), extra={"k": [1, 2], "s": "none", "n": None}),
    FeatureConfig(),
    FeatureConfig(sr=8000, n_fft=256, fmax=3000.0, normalize=None, window="hann", log="db", preemphasis=0.0),
    TrainConfig(),
    TrainConfig(model="resnet18", model_overrides={"resnet": {"width": 8}, "attention": {"hops": 2}}, lr=3e-3,
                min_lr=1e-7, mixed_precision=True, gain_db=(-6.0, 6.0), time_masks=2, eval_mode="windows",
                window_frames=64, hop_frames=32, devices="2", optimizer="sgd", lr_schedule="cosine"),
]


@pytest.mark.parametrize("config", ROUND_TRIPS, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("all_fields", [False, True])
def test_config_to_argv_round_trips(config, all_fields):
    argv = config_to_argv(config, all_fields=all_fields)
    assert all(isinstance(a, str) for a in argv)
    assert _parse(type(config), argv) == config


def test_round_trip_of_the_demo_preset():
    from spkid.app.demo import demo_train_config

    config = demo_train_config("vgg_attention", epochs=2, seed=3)  # tuples inside a dict come back as lists
    assert _parse(TrainConfig, config_to_argv(config)).to_dict() == config.to_dict()


def test_only_changed_fields_are_written():
    assert config_to_argv(TrainConfig()) == []
    assert config_to_argv(TrainConfig(epochs=2, mixed_precision=True)) == ["--epochs", "2", "--mixed-precision", "true"]


def test_data_options_round_trip():
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    args = parser.parse_args(["--data", "/d", "--layout", "pattern", "--pattern", "fsdd", "--feature-config", "f.yaml"])
    assert data_argv(args) == ["--data", "/d", "--layout", "pattern", "--pattern", "fsdd", "--feature-config", "f.yaml"]
    assert vars(parser.parse_args(data_argv(args))) == vars(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["--cache", "c", "--data", "d"])


def test_commands_do_not_import_each_other():
    offenders = []
    for path in sorted((REPO / "spkid" / "app" / "commands").glob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\b(from|import)\s+spkid\.app\.commands\b|from\s+\.\S*\s+import", line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_every_command_help_works(capsys):
    from spkid.app.cli import COMMANDS, main

    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0, name
        assert "_MISSING_TYPE" not in capsys.readouterr().out, name
