"""Repository-level invariants: the README's commands, CI, and a framework-free core."""
from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import spkid

REPO = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- commands -->\s*```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README must hold the two commands in a fenced block after <!-- commands -->"
    lines = [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]
    return lines


def test_readme_has_exactly_two_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert "spkid demo" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_readme_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _readme_commands()[1] in [ln.strip() for ln in ci]


def test_core_imports_no_framework():
    """Importing every module of the core package loads no tensorflow, keras or torch."""
    modules = sorted(
        m.name for m in pkgutil.walk_packages(spkid.__path__, "spkid.") if m.name != "spkid.__main__"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'tensorflow', 'keras', 'jax'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core imported a framework: {out.stdout.strip()}"
    assert len(modules) >= 5


def test_backends_expose_the_same_names():
    import spkid_keras
    import spkid_torch

    assert sorted(spkid_torch.__all__) == sorted(spkid_keras.__all__)
    assert {"create_model", "list_models", "fit", "evaluate", "embed"} <= set(spkid_torch.__all__)
