"""Shared pieces of the store tests (tests/core/test_waves.py, test_featstore.py): a build killed with
SIGKILL once its first shard is journaled."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def kill_after_first_shard(script: str, args: list, root: Path, *, wait_s: float = 60.0) -> Path:
    """Run ``python -c script *args`` (a store build into ``root``), SIGKILL it as soon as the journal of
    its first shard exists (or after ``wait_s``), and return that journal's path."""
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)])
    journal = Path(root) / ".build" / "shard-00000.json"
    deadline = time.time() + wait_s
    while not journal.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return journal
