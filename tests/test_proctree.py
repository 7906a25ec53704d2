"""Sweeping what a submission leaves behind, as the grading process does it (a subreaper)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

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
