"""Shared fixtures.

Real speech lives in ``../shared/data`` beside the checkout (never copied into the repo). Tests that need
it use the ``shared_data`` fixture (or mark ``data``): they skip cleanly when it is absent, except under
``CI=true``, where a missing data folder fails the run.
"""
from __future__ import annotations

import os

# Tiny test models run fastest (and most repeatably) single-threaded; a busy 2-core machine with
# two intra-op threads per process can be 100x slower. Set before any test imports torch/numpy BLAS.
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPKID_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"real speech not found at {path}"
        if IN_CI:
            pytest.fail(f"{msg}; CI=true requires ../shared/data", pytrace=False)
        pytest.skip(msg)
    return path.resolve()  # the library resolves dataset roots; ../shared may be a symlink


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (skip if absent; fail under CI=true)."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def fsdd_dir(shared_data: Path) -> Path:
    return _require(shared_data / "fsdd")


@pytest.fixture(scope="session")
def libri_dir(shared_data: Path) -> Path:
    return _require(shared_data / "librispeech-251")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
