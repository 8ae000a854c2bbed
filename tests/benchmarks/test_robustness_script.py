"""benchmarks/robustness.py end to end, on six real libri251 files and a one-epoch torch model.

The model trains through ``accuracy.py`` (a subprocess, as in ``test_accuracy_scripts.py``); the robustness and
gallery scripts then run in this process (their ``main``), which saves two interpreter and framework starts.
``--limit 12`` covers all six test segments, so the clean row must equal what ``gallery_accuracy.py``
reports for the same model and segments. Checks the table's shape and ranges, the last line, and that the
degradations are fixed by ``--seed`` (a second run prints the same table). Not a claim about robustness:
that is the README's, from the full runs.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from tests.benchmarks.test_accuracy_scripts import REPO, _libri_subset, _run  # noqa: E402

ROW = re.compile(r"  (.+?) +(\d+\.\d\d)% +([+-]\d+\.\d\d) +(\d+\.\d\d)% +([+-]\d+\.\d\d)")
LAST = re.compile(r"clean_gallery_top1=(\d+\.\d\d) worst_drop=(-?\d+\.\d\d)")


def _script(name: str):
    """benchmarks/NAME.py imported as a module (it puts benchmarks/ on sys.path for its own imports)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _main(capsys, name: str, *args) -> list[str]:
    capsys.readouterr()
    assert _script(name).main([str(a) for a in args]) == 0
    return capsys.readouterr().out.strip().splitlines()


@pytest.mark.data
def test_robustness_table(libri_dir: Path, tmp_path: Path, capsys):
    data = _libri_subset(libri_dir, tmp_path, 6)
    run = tmp_path / "run"
    _run("accuracy.py", "--protocol", "libri251", "--backend", "torch", "--epochs", "1", "--data", data, "--out", run)

    args = ("--model", run, "--limit", 12, "--data", data)
    lines = _main(capsys, "robustness", *args)
    robustness = sys.modules["robustness"]
    assert "6 of 6 test segments, seed 0" in lines[0], lines[0]
    rows = {m.group(1): [float(x) for x in m.groups()[1:]] for m in map(ROW.fullmatch, lines) if m}
    assert list(rows) == [name for name, _ in robustness.CONDITIONS], lines
    assert len(rows) == 11 and len(lines) == 2 + 11 + 1
    for name, (g1, g_drop, h1, h_drop) in rows.items():
        assert 0.0 <= g1 <= 100.0 and 0.0 <= h1 <= 100.0, name
        assert g_drop == pytest.approx(rows["clean"][0] - g1, abs=0.011), name
        assert h_drop == pytest.approx(rows["clean"][2] - h1, abs=0.011), name
    clean_g, worst = map(float, LAST.fullmatch(lines[-1]).groups())
    assert clean_g == rows["clean"][0]
    assert worst == max(g_drop for name, (_, g_drop, _, _) in rows.items() if name != "clean")

    # the clean row is gallery_accuracy.py's gallery (3 s windows) and classifier-head top-1
    gallery_top1, head_top1 = map(float, re.fullmatch(
        r"gallery_top1=(\d+\.\d\d) head_top1=(\d+\.\d\d)",
        _main(capsys, "gallery_accuracy", "--model", run, "--data", data)[-1]).groups())
    assert (rows["clean"][0], rows["clean"][2]) == (gallery_top1, head_top1)

    # degradations come from their own seeded generators: the same command prints the same table
    again = _main(capsys, "robustness", *args)
    assert [re.sub(r", [\d.]+ s$", "", line) for line in again] == [re.sub(r", [\d.]+ s$", "", line) for line in lines]

    # short queries: the first second of each segment, degraded after the cut -- another table
    short = _main(capsys, "robustness", *args, "--query-seconds", 1.0)
    assert "6 of 6 test segments, first 1 s of each, seed 0" in short[0], short[0]
    assert [ROW.fullmatch(line) is not None for line in short] == [ROW.fullmatch(line) is not None for line in lines]

    # multi-condition enrolment: each of the 6 enrolment recordings plus one augmented copy, drawn from its
    # own generator (the same copies twice), the test rows still all there
    enrolled = _main(capsys, "robustness", *args, "--enrol-copies", 1)
    assert "12 enrolment items" in enrolled[0] and "1 augmented enrolment copies" in enrolled[0], enrolled[0]
    assert [ROW.fullmatch(line) is not None for line in enrolled] == [ROW.fullmatch(line) is not None for line in lines]
    embedder = robustness.load_model(run, "libri251")
    train, _, _, train_waves = robustness.load_protocol("libri251", data / "librispeech-251", embedder.feature_config,
                                                        embedder.config)
    a, b = (robustness.enrolment_copies(train, train_waves, 2, embedder.feature_config, embedder.config, 0)
            for _ in range(2))
    assert len(a) == 3 * len(train) and list(a.labels[len(train):]) == [lab for lab in train.labels for _ in range(2)]
    assert all(np.array_equal(x, y) for x, y in zip(a.features, b.features))
    assert not np.array_equal(a.features[len(train)], train.features[0])


def test_robustness_without_data_exits_2(tmp_path: Path, capsys):
    assert _script("robustness").main(["--model", str(tmp_path / "run"), "--data", str(tmp_path / "missing")]) == 2
    assert f"real speech not found at {tmp_path / 'missing' / 'librispeech-251'}" in capsys.readouterr().err
