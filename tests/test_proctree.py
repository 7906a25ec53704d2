"""Sweeping what a submission leaves behind, as the grading process does it (a subreaper)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from grader import proctree
from tests.conftest import ROOT
from tests.levels import NOBODY

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="subreapers and /proc are Linux's")

# A grading process in miniature: a subreaper whose child leaves a process that
# forks and exits every 2 ms (a new session each time), then the sweep.
SCRIPT = textwrap.dedent("""
    import os, subprocess, sys, time
    from grader import proctree
    proctree.become_subreaper()
    before = set(proctree.descendants(os.getpid()))
    # Bounded (60 s), so that a sweep that fails leaves nothing running for long.
    runner = ("import os, time\\n"
              "if os.fork() == 0:\\n"
              "    end = time.time() + 60\\n"
              "    while time.time() < end:\\n"
              "        try: os.setsid()\\n"
              "        except OSError: pass\\n"
              "        if os.fork() != 0: os._exit(0)\\n"
              "        time.sleep(0.002)\\n")
    subprocess.run([sys.executable, "-c", runner], check=True)
    def zombies():
        return [p for p, (parent, state) in proctree.scan().items() if parent == os.getpid() and state == b"Z"]
    waited = time.monotonic() + 30
    while len(zombies()) < 10 and time.monotonic() < waited:
        time.sleep(0.1)
    piled = len(zombies())
    proctree.reap()
    reaped = len(zombies())
    proctree.sweep_descendants(keep=before)
    time.sleep(0.2)
    left = [p for p in proctree.descendants(os.getpid()) if p != os.getpid() and proctree.is_live(p)]
    print(piled, reaped, len(left), len(zombies()))
""")


def test_a_process_that_forks_and_exits_in_a_loop_is_swept_and_reaped():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    piled, reaped, left, zombies = map(int, out.stdout.split())
    assert piled >= 10  # the orphans' exits reach us, the subreaper, and pile up unless reaped
    assert reaped < piled  # (the runner goes on exiting while they are counted)
    assert left == 0 and zombies == 0


MEASURE = textwrap.dedent("""
    import os, sys
    home = sys.argv[1]
    os.makedirs(os.path.join(home, "hidden", "deeper"))
    with open(os.path.join(home, "hidden", "deeper", "kept"), "wb") as handle:
        handle.write(b"x" * (1 << 20))
    os.chmod(os.path.join(home, "hidden"), 0o300)  # no reading: its contents cannot be listed
    from grader import proctree
    print(*proctree.tree_usage(home, 100))
""")


def test_a_folder_made_unreadable_in_the_home_is_still_measured():
    """At ``landlock`` the worker and the grader are one user: a mode-0300 folder hid
    its files from the watchdog's walk (1.3 GiB in issue 17); the grader opens it up."""
    from tests.levels import _as_nobody, can_run_as_nobody, user_workdir

    if not can_run_as_nobody():
        pytest.skip("needs root and setpriv to act as an unprivileged user")
    folder = Path(tempfile.mkdtemp(prefix="measure-"))  # in /tmp: reachable by that user
    try:
        workdir = user_workdir(folder)
        home = folder / "home"
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)
        out = subprocess.run(_as_nobody([sys.executable, "-c", MEASURE, str(home)]), cwd=workdir,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        used, entries = map(int, out.stdout.split())
        assert entries == 3 and used >= 1 << 20
    finally:
        proctree.remove_tree(str(folder))
