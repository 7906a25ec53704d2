"""Groups left by a grader that was killed before its clean-up are swept by the next one."""

from __future__ import annotations

import os
import subprocess
import sys

from grader import cgroups


def test_empty_groups_of_dead_graders_are_swept_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"bngrade-{int(dead.stdout)}-0000aaaa"
    mine = tmp_path / f"bngrade-{os.getpid()}-0000bbbb"
    other = tmp_path / "someone-else"
    for folder in (stale, mine, other):
        folder.mkdir()
    busy = tmp_path / f"bngrade-{int(dead.stdout)}-0000cccc"
    (busy / "child").mkdir(parents=True)  # not empty: rmdir refuses, as the kernel's would
    cgroups._sweep(tmp_path)
    assert not stale.exists() and mine.exists() and other.exists() and busy.exists()
