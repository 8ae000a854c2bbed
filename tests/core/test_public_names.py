"""Every public name the README and the package design promise resolves: import it, or import its
module and look the attribute up.

Two sources:

- README.md: every inline code span whose whole text is a dotted Python name under ``spkid``,
  ``spkid_torch`` or ``spkid_keras`` (optionally called: `spkid.fbank(y, sr)`). Commands (`spkid demo`),
  paths (`spkid/features.py`, `./spkid_out/demo/`) and file names (`spkid.yaml`) are not names and are
  left out; fenced code blocks (shell commands) are not read.
- :data:`PROMISED`: the names the package design promises (the lazy top-level API, the backend
  packages' identical surfaces, the model registry modules).

A name whose module needs an optional framework that is not installed (torch, keras, onnxruntime,
faiss) skips; a name whose spkid module moved fails with the import error.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
ROOTS = ("spkid", "spkid_torch", "spkid_keras")
OPTIONAL = {"torch", "keras", "tensorflow", "onnxruntime", "onnx", "faiss", "flask"}
NEEDS = {"spkid_torch": "torch", "spkid_keras": "keras"}
FILE_SUFFIXES = {"py", "md", "txt", "json", "yaml", "yml", "toml", "cfg", "csv", "npz", "npy", "onnx", "pt",
                 "png", "wav", "flac", "html", "log", "keras", "h5"}

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_SPAN = re.compile(r"`([^`\n]+)`")
_NAME = re.compile(r"(?P<name>(?:%s)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(.*\))?" % "|".join(ROOTS))

MODELS = ("vgg_attention", "resnet18", "resnet50")
BACKEND_API = ("create_model", "list_models", "count_params", "SpeakerNet", "fit", "evaluate", "embed",
               "load_model", "load_checkpoint")
PROMISED = (
    # the framework-free core, as README "Features", "Search" and the package docstring promise
    "spkid.fbank", "spkid.mfcc", "spkid.fbank_batch", "spkid.extract_features", "spkid.load_audio",
    "spkid.SpeakerIndex", "spkid.Gallery", "spkid.FeatureConfig", "spkid.TrainConfig", "spkid.FeatureSet",
    "spkid.ModelSpec", "spkid.model_spec", "spkid.MODEL_NAMES", "spkid.Manifest", "spkid.load_dataset",
    "spkid.build_cache", "spkid.compute_eer", "spkid.load_embedder", "spkid.export_model",
    "spkid.OnnxEmbedder", "spkid.SpkidError", "spkid.AudioError", "spkid.errors.SpkidError",
    "spkid.models.specs", "spkid.models.specs.TINY_OVERRIDES", "spkid.search.Gallery",
    "spkid.inference.OnnxEmbedder", "spkid.backends.get_backend", "spkid.backends.BACKENDS",
    # the two backends: the same members, the same model modules, weight porting
    *(f"{pkg}.{name}" for pkg in ("spkid_torch", "spkid_keras") for name in BACKEND_API),
    *(f"{pkg}.models.{m}" for pkg in ("spkid_torch", "spkid_keras") for m in MODELS),
    *(f"{pkg}.models.{n}" for pkg in ("spkid_torch", "spkid_keras") for n in ("create_model", "SpeakerNet")),
    "spkid_torch.backend.BACKEND", "spkid_keras.backend.BACKEND", "spkid_keras.convert.torch_to_keras",
)


def readme_names(text: str) -> list[str]:
    """Dotted spkid/spkid_torch/spkid_keras names in README inline code spans (see the module docstring)."""
    names = []
    for span in _SPAN.findall(_FENCE.sub("", text)):
        m = _NAME.fullmatch(span.strip())
        if m and m["name"].rsplit(".", 1)[1] not in FILE_SUFFIXES:
            names.append(m["name"])
    return sorted(set(names))


def test_readme_parser_is_strict():
    text = ("`spkid.fbank(y, sr)` and `spkid_keras.convert`, not `spkid demo --out x`, `spkid/features.py`,\n"
            "`./spkid_out/demo/`, `spkid.yaml`, `spkid_torch`, `from spkid import x`, `xspkid.fbank`\n"
            "```bash\nspkid.SpeakerIndex\n`spkid.in_fence`\n```\n")
    assert readme_names(text) == ["spkid.fbank", "spkid_keras.convert"]


def test_readme_names_are_found():
    names = readme_names(README.read_text(encoding="utf-8"))
    # the README's promises at the time of writing; a rewrite may add names, but losing all of them
    # would mean the parser no longer matches the README's style
    assert {"spkid.fbank", "spkid.mfcc", "spkid.fbank_batch", "spkid.SpeakerIndex"} <= set(names), names


def _missing_optional(err: ImportError) -> str | None:
    """The optional third-party package whose absence caused ``err``, if it is really not installed."""
    top = (getattr(err, "name", None) or "").split(".")[0]
    return top if top in OPTIONAL and importlib.util.find_spec(top) is None else None


def resolve(dotted: str):
    """Import the longest importable module prefix of ``dotted`` and getattr the rest."""
    framework = NEEDS.get(dotted.split(".")[0])
    if framework and importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")
    parts = dotted.split(".")
    try:
        for i in range(len(parts), 0, -1):
            modname = ".".join(parts[:i])
            try:
                obj = importlib.import_module(modname)
                break
            except ModuleNotFoundError as err:
                if err.name != modname:  # the module exists but one of its imports is missing
                    raise
        else:  # pragma: no cover - the root packages always import
            raise AssertionError(dotted)
        for attr in parts[i:]:
            obj = getattr(obj, attr)
    except ImportError as err:
        if (missing := _missing_optional(err)) is not None:
            pytest.skip(f"{dotted} needs {missing}, which is not installed")
        raise
    return obj


ALL_NAMES = sorted(set(PROMISED) | set(readme_names(README.read_text(encoding="utf-8"))))


@pytest.mark.parametrize("dotted", ALL_NAMES)
def test_public_name_resolves(dotted):
    assert resolve(dotted) is not None


@pytest.mark.parametrize("package", ROOTS)
def test_every_name_in_all_resolves(package):
    framework = NEEDS.get(package)
    if framework and importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")
    mod = importlib.import_module(package)
    assert mod.__all__ and len(set(mod.__all__)) == len(mod.__all__)
    for name in mod.__all__:
        resolve(f"{package}.{name}")
    assert set(mod.__all__) <= set(dir(mod))


@pytest.mark.parametrize("module", ["", ".models"])
def test_backends_expose_the_same_names(module):
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    t = importlib.import_module(f"spkid_torch{module}")
    k = importlib.import_module(f"spkid_keras{module}")
    assert list(t.__all__) == list(k.__all__)
    assert set(BACKEND_API if not module else ("create_model", "list_models", "SpeakerNet")) <= set(t.__all__)
    assert t.list_models() == k.list_models() and set(t.list_models()) == set(MODELS)
