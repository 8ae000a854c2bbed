"""Bad configurations: unknown keys, wrong types and impossible values give a ConfigError that names the
config class and the field -- from Python, from YAML files and from the command line (exit 2, no traceback)."""
from __future__ import annotations

import types

import pytest

from spkid.app.cli import main
from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig
from spkid._strict import load_yaml_config
from spkid.errors import ConfigError
from spkid.models.specs import AttentionSpec, ModelSpec, ResNetSpec, VGGSpec, model_spec

FEATURE_BAD = [  # (overrides, words the message must contain)
    ({"n_mels": 300}, ["n_mels", "n_fft/2+1=257", "300"]),  # n_mels > n_fft/2 + 1
    ({"n_mels": 0}, ["n_mels"]),
    ({"n_fft": 256, "frame_length": 0.016, "n_mels": 130}, ["n_mels", "129"]),
    ({"frame_shift": 0.0}, ["frame_shift", "hop"]),  # hop 0
    ({"frame_shift": 1e-6}, ["frame_shift", ">= 1"]),  # rounds to a 0-sample hop
    ({"frame_length": -0.025}, ["frame_length"]),
    ({"frame_length": float("nan")}, ["frame_length"]),
    ({"frame_length": 6.25e23}, ["longer than n_fft"]),  # found by test_fuzz: once a decimal.InvalidOperation
    ({"sr": -16000}, ["sr", "> 0"]),  # negative rate
    ({"sr": 0}, ["sr"]),
    ({"n_fft": 256}, ["longer than n_fft=256"]),  # 400-sample frame does not fit
    ({"preemphasis": 1.0}, ["preemphasis"]),
    ({"fmax": 9000.0}, ["fmax", "sr/2"]),
    ({"fmin": 4000.0, "fmax": 3000.0}, ["fmin"]),
    ({"fmin": -1.0}, ["fmin"]),
    ({"n_mels": 40.5}, ["FeatureConfig.n_mels", "expected int"]),  # wrong types
    ({"sr": "16k"}, ["FeatureConfig.sr", "expected int"]),
    ({"sr": True}, ["FeatureConfig.sr"]),
    ({"window": "blackman"}, ["FeatureConfig.window"]),
    ({"log": None}, ["FeatureConfig.log"]),
    ({"normalize": "max"}, ["FeatureConfig.normalize"]),
    ({"n_mel": 40}, ["unknown key", "'n_mel'", "n_mels"]),  # unknown key, valid ones listed
]


@pytest.mark.parametrize("bad,words", FEATURE_BAD, ids=[str(b) for b, _ in FEATURE_BAD])
def test_feature_config_rejects(bad, words):
    with pytest.raises(ConfigError) as err:
        FeatureConfig.from_dict(bad)
    for w in words:
        assert w in str(err.value)


NOT_MAPPINGS = ["16k", b"sr", [["sr", 8000]], ("sr", 8000), 8000, 8000.0, True, {"sr", "n_mels"}]


@pytest.mark.parametrize("cls", [FeatureConfig, TrainConfig, ModelSpec, VGGSpec])
@pytest.mark.parametrize("data", NOT_MAPPINGS, ids=[type(d).__name__ for d in NOT_MAPPINGS])
def test_from_dict_on_a_non_mapping_names_the_class_and_the_type(cls, data):
    """Not a mapping (a string, a list of pairs, a number...) is a ConfigError, never a raw ValueError or
    TypeError from ``dict(data)`` -- and a list of pairs is not silently taken for a mapping."""
    with pytest.raises(ConfigError) as err:
        cls.from_dict(data)
    msg = str(err.value)
    assert cls.__name__ in msg and "mapping" in msg and type(data).__name__ in msg, msg


@pytest.mark.parametrize("bad,words", [
    ({"frame_length": 10**400}, ["FeatureConfig.frame_length", "out of range"]),  # int -> float overflows
    ({"sr": 10**400}, ["FeatureConfig", "OverflowError"]),  # overflows inside validate()
    ({"frame_shift": 1e308}, ["FeatureConfig", "impossible values"]),  # hop of inf samples
    ({1: 2, "b": 3}, ["unknown key", "1", "'b'"]),  # keys that do not sort together
], ids=["int-overflow", "validate-overflow", "inf-hop", "mixed-keys"])
def test_from_dict_never_leaks_arithmetic_or_type_errors(bad, words):
    with pytest.raises(ConfigError) as err:
        FeatureConfig.from_dict(bad)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_from_dict_none_and_empty_mean_defaults():
    assert FeatureConfig.from_dict(None) == FeatureConfig.from_dict({}) == FeatureConfig()
    assert FeatureConfig.from_dict(None, n_mels=64).n_mels == 64
    assert FeatureConfig.from_dict(types.MappingProxyType({"n_mels": 64})).n_mels == 64  # any Mapping


TRAIN_BAD = [
    ({"lr": -1e-3}, "lr"), ({"lr": float("inf")}, "lr"), ({"batch_size": 0}, "batch_size"),
    ({"epochs": "10"}, "epochs"), ({"crop_frames": -300}, "crop_frames"), ({"augment_prob": -0.1}, "augment_prob"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"model": "resnet101"}, "model"), ({"seed": -1}, "seed"),
    ({"gain_db": [1.0]}, "gain_db"), ({"model_overrides": {"attention": {"hops": 0}}}, "hops"),
    ({"model_overrides": {"vgg": {"chanels": [4]}}}, "chanels"), ({"learning_rate": 1e-3}, "learning_rate"),
]


@pytest.mark.parametrize("bad,word", TRAIN_BAD, ids=[str(b) for b, _ in TRAIN_BAD])
def test_train_config_rejects(bad, word):
    with pytest.raises(ConfigError, match=word) as err:
        TrainConfig.from_dict(bad)
    assert "TrainConfig" in str(err.value)


SPEC_BAD = [  # (class, overrides, a word the message must contain)
    (ModelSpec, {"n_mels": 0}, "n_mels"), (ModelSpec, {"embedding_dim": -5}, "embedding_dim"),
    (ModelSpec, {"bn_momentum": 1.0}, "momentum"), (ModelSpec, {"bn_eps": 0.0}, "eps"),
    (ModelSpec, {"arch": "transformer"}, "arch"), (ModelSpec, {"embedding": 256}, "'embedding'"),
    (ModelSpec, {"vgg": {"channels": []}}, "channels"), (ModelSpec, {"vgg": "big"}, "vgg"),
    (VGGSpec, {"channels": [64, 0]}, "channels"), (VGGSpec, {"convs_per_block": 0}, "convs_per_block"),
    (VGGSpec, {"time_pool": [2, 1]}, "time_pool"), (VGGSpec, {"time_pool": [2, 3, 1, 1]}, "time_pool"),
    (ResNetSpec, {"depths": [2, 0]}, "depths"), (ResNetSpec, {"block": "wide"}, "block"),
    (ResNetSpec, {"width": 2.5}, "width"), (AttentionSpec, {"hops": 0}, "hops"), (AttentionSpec, {"pool": "max"}, "pool"),
]


@pytest.mark.parametrize("cls,bad,word", SPEC_BAD, ids=[f"{c.__name__}-{b}" for c, b, _ in SPEC_BAD])
def test_model_specs_reject(cls, bad, word):
    with pytest.raises(ConfigError) as err:
        cls.from_dict(bad)
    assert "Spec" in str(err.value) and word in str(err.value)


def test_model_spec_by_name_rejects_unknown_models_and_keys():
    with pytest.raises(ConfigError, match="vgg19"):
        model_spec("vgg19")
    with pytest.raises(ConfigError, match="width"):
        model_spec("resnet18", resnet={"width": 0})


def test_configs_are_frozen():
    c = FeatureConfig()
    with pytest.raises(AttributeError):
        c.n_mels = 80  # type: ignore[misc]


@pytest.mark.parametrize("data,words", [
    (None, ["config file not found"]),
    (b"n_mels: [1, 2\n", ["invalid YAML"]),
    (b"- 1\n- 2\n", ["expected a mapping", "list"]),
    (b"n_mels: 4\xff\n", ["cannot read config"]),
])
def test_yaml_config_files(tmp_path, data, words):
    p = tmp_path / "c.yaml"
    if data is not None:
        p.write_bytes(data)
    with pytest.raises(ConfigError) as err:
        load_yaml_config(p)
    assert str(p) in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_yaml_never_constructs_python_objects(tmp_path):
    p = tmp_path / "c.yaml"
    marker = tmp_path / "pwned"
    p.write_text(f"sr: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml_config(p)
    assert not marker.exists()


@pytest.mark.parametrize("flags,yaml_text,words", [
    (["--n-mels", "300"], None, ["n_mels", "257"]),
    (["--frame-shift", "0"], None, ["frame_shift"]),
    (["--sr", "-8000"], None, ["sr", "> 0"]),
    ([], "n_mel: 40\n", ["unknown key", "'n_mel'"]),
    ([], "n_mels: forty\n", ["FeatureConfig.n_mels", "expected int"]),
])
def test_prepare_command_reports_bad_feature_config(tmp_path, capsys, flags, yaml_text, words):
    (tmp_path / "data").mkdir()
    if yaml_text is not None:
        (tmp_path / "f.yaml").write_text(yaml_text)
        flags = flags + ["--feature-config", str(tmp_path / "f.yaml")]
    assert main(["prepare", str(tmp_path / "data"), "--cache", str(tmp_path / "cache"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spkid prepare: error:") and "Traceback" not in err
    for w in words:
        assert w in err
    assert not (tmp_path / "cache").exists()  # rejected before anything was written


@pytest.mark.parametrize("flags,words", [
    (["--lr", "-1"], ["TrainConfig.lr"]),
    (["--batch-size", "0"], ["batch_size"]),
    (["--gain-db", "[3, -3"], ["--gain-db", "not valid YAML"]),
    (["--model-overrides", "{vgg: {channels: []}}"], ["model_overrides"]),
])
def test_train_command_reports_bad_train_config(tmp_path, capsys, flags, words):
    args = ["train", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--no-progress", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("spkid train: error:") and "Traceback" not in err
    for w in words:
        assert w in err
    assert not (tmp_path / "run").exists()
