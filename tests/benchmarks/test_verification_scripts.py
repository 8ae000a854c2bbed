"""benchmarks/verification.py and benchmarks/timeline.py end to end, on ten real libri251 files and a one-epoch
torch model (trained through ``accuracy.py`` as in ``test_robustness_script.py``; the two scripts then run in this
process). Checks the tables' shape, ranges and last lines, and that the constructed recordings are fixed by
``--seed``. Not a claim about accuracy: that is the README's, from the full runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.benchmarks.test_robustness_script import _main, _script

ROW = re.compile(r"  (raw|S-norm|AS-norm top-\d+) +(\d+) +(\d+) +(\d+\.\d\d) +(\d\.\d{4}) +(\d\.\d{4})")
VER_LAST = re.compile(r"raw_eer=(\d+\.\d\d) snorm_eer=(\d+\.\d\d) asnorm_eer=(\d+\.\d\d)")
TL_LAST = re.compile(r"enrolled=(\d+\.\d\d) unknown=(\d+\.\d\d) boundary=(\d+\.\d{3})")


@pytest.fixture(scope="module")
def libri_run(libri_dir: Path, tmp_path_factory):
    pytest.importorskip("torch")
    from tests.benchmarks.test_accuracy_scripts import _libri_subset, _run

    tmp = tmp_path_factory.mktemp("verification")
    data = _libri_subset(libri_dir, tmp, 10)
    run = tmp / "run"
    _run("accuracy.py", "--protocol", "libri251", "--backend", "torch", "--epochs", "1", "--data", data, "--out", run)
    return data, run


@pytest.mark.data
def test_verification_table(libri_run, capsys):
    data, run = libri_run
    lines = _main(capsys, "verification", "--model", run, "--data", data, "--top-n", 4)
    assert "20 test pieces of 10 speakers" in lines[0], lines[0]
    rows = [ROW.fullmatch(line) for line in lines]
    rows = [m.groups() for m in rows if m]
    assert [r[0] for r in rows] == ["raw", "S-norm", "AS-norm top-4"]
    for name, trials, targets, eer, dcf1, dcf5 in rows:
        assert int(trials) == 2 * 45 and int(targets) == 10  # two folds of 5 speakers, 2 pieces each
        assert 0.0 <= float(eer) <= 100.0 and 0.0 <= float(dcf1) <= 1.0 and 0.0 <= float(dcf5) <= 1.0
    last = VER_LAST.fullmatch(lines[-1]).groups()
    assert list(last) == [r[3] for r in rows]


@pytest.mark.data
def test_timeline_table(libri_run, capsys):
    data, run = libri_run
    args = ("--model", run, "--data", data, "--recordings", 2, "--seconds", 15, "--seed", 3)
    lines = _main(capsys, "timeline", *args)
    assert "8 enrolled, 1 tuning and 1 unenrolled speakers" in lines[0], lines[0]
    enrolled, unknown, boundary = map(float, TL_LAST.fullmatch(lines[-1]).groups())
    assert 0.0 <= enrolled <= 100.0 and 0.0 <= unknown <= 100.0 and boundary >= 0.0
    assert lines[2].split() == ["EER", "threshold", "strict", "threshold"] and len(lines) == 9
    assert lines[3].startswith("  enrolled time labelled right") and f"{enrolled:16.2f}%" in lines[3]
    assert lines[4].startswith("  unenrolled time marked unknown") and f"{unknown:16.2f}%" in lines[4]
    eer_rule, strict_rule = (float(x.rstrip("%")) for x in lines[4].split()[-2:])
    assert strict_rule >= eer_rule  # a higher threshold marks at least as much unknown
    again = _main(capsys, "timeline", *args)  # seeded recordings: the same figures
    assert again[-1] == lines[-1] and again[1].split(";")[:2] == lines[1].split(";")[:2]
    assert again[0].split("; setup")[0] == lines[0].split("; setup")[0]


@pytest.mark.parametrize("name", ["verification", "timeline"])
def test_without_data_exits_2(name, tmp_path: Path, capsys):
    assert _script(name).main(["--model", str(tmp_path / "run"), "--data", str(tmp_path / "missing")]) == 2
    assert f"real speech not found at {tmp_path / 'missing' / 'librispeech-251'}" in capsys.readouterr().err
