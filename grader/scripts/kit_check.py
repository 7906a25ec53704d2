"""Practice check for the student kit (shipped as check.py; check.sh calls it).

    python check.py                   # Linux, macOS, Windows: any Python 3.11 or newer
    py -3.11 check.py                 # Windows, choosing the version
    PYTHON=/path/to/python3.12 python check.py   # make .venv with another interpreter
    python check.py homework.ipynb    # grade a notebook (or another .py) instead of batchnorm.py

The first run makes .venv with this Python (or $PYTHON) and installs the pinned
packages into it; every run then grades batchnorm.py on the public practice suite
with the kit's own exercise. Extra arguments go to the grader (e.g. --results r.json).
Only the standard library is used, and no shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXERCISE = "batchnorm_linen"  # the kit's exercise (written in when the kit is built)
NEEDED = "Python 3.11 or newer (3.11, 3.12 and 3.13 are known to work with the pinned versions)"
PROBE = 'import sys; print("%d.%d.%d" % sys.version_info[:3]); sys.exit(0 if sys.version_info >= (3, 11) else 1)'
KIT = Path(__file__).resolve().parent
VENV = KIT / ".venv"
INSTALLED = VENV / ".installed"


def _say(message: str, *, error: bool = False) -> None:
    print(f"check: {message}", file=sys.stderr if error else sys.stdout, flush=True)


def venv_python() -> Path:
    """The environment's interpreter: .venv/bin/python, or its Windows twin, Scripts\\python.exe."""
    windows = VENV / "Scripts" / "python.exe"
    return windows if os.name == "nt" or windows.exists() else VENV / "bin" / "python"


def _interpreter() -> tuple[str, str] | None:
    """The interpreter that makes .venv, and its version: $PYTHON, else this one."""
    chosen = os.environ.get("PYTHON", "").strip()
    if not chosen:
        if sys.version_info >= (3, 11):
            return sys.executable, "%d.%d.%d" % sys.version_info[:3]
        _say(f"this kit needs {NEEDED}; this is {sys.version.split()[0]}. Install one from "
             "https://www.python.org/downloads/ and run it: python3.11 check.py (Windows: py -3.11 check.py).",
             error=True)
        return None
    try:
        probe = subprocess.run([chosen, "-c", PROBE], capture_output=True, text=True, timeout=60)
    except OSError as err:
        _say(f"PYTHON={chosen} cannot be run ({err.strerror or err}).", error=True)
        return None
    version = probe.stdout.strip()
    if probe.returncode != 0:
        _say(f"PYTHON={chosen} is not {NEEDED}{f' (it is {version})' if version else ''}.", error=True)
        return None
    return chosen, version


def set_up() -> bool:
    """Make .venv once (a half-made one is replaced); False, with the reason said, if it cannot be."""
    found = _interpreter()
    if found is None:
        return False
    python, version = found
    _say(f"setting up .venv with {python} (Python {version}); the first run installs the pinned packages")
    shutil.rmtree(VENV, ignore_errors=True)
    if subprocess.run([python, "-m", "venv", ".venv"], cwd=KIT).returncode != 0:
        shutil.rmtree(VENV, ignore_errors=True)
        _say(f"{python} could not create a virtual environment (on Debian or Ubuntu: sudo apt install "
             f"python{version.rsplit('.', 1)[0]}-venv).", error=True)
        return False
    pip = [str(venv_python()), "-m", "pip", "install", "--quiet", "-r", "requirements.txt"]
    if subprocess.run(pip, cwd=KIT).returncode != 0:
        _say(f"installing the pinned packages (requirements.txt) with Python {version} failed; see pip's message "
             "above. If pip found no matching version, use Python 3.11 or 3.12: PYTHON=/path/to/python3.11", error=True)
        return False
    INSTALLED.touch()
    return True


def main(argv: list[str]) -> int:
    """Grade batchnorm.py, or the file named first (a notebook: python check.py homework.ipynb)."""
    if not (venv_python().exists() and INSTALLED.exists()) and not set_up():
        return 2
    target = "batchnorm.py"
    if argv and not argv[0].startswith("-") and argv[0].lower().endswith((".py", ".ipynb")):
        target, argv = str(Path(argv[0]).resolve()), argv[1:]
    command = [str(venv_python()), "-m", "grader", "grade", target, "--exercise", EXERCISE,
               "--isolation", "process", *argv]
    return subprocess.run(command, cwd=KIT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
