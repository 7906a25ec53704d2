"""What instructors hand out: the student kit and the Gradescope autograder zip.

Both are built from an explicit allow-list of files, never by copying the
project and deleting: the reference solution, the tests, the bundled wrong
submissions and any secret can only end up inside if named here (and the
Gradescope bundle names the secret on purpose).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from grader.exercises import Exercise
from grader.exercises import get as get_exercise
from grader.isolation import PROJECT_DIR

GRADER_DIR = PROJECT_DIR / "grader"
EXERCISE_DIR = PROJECT_DIR / "exercise"
# The grader's own modules: everything a practice check needs, no solution.
# (grader/scripts/ holds the kit's and Gradescope's own scripts, shipped under their own names.)
GRADER_FILES = sorted(p.relative_to(PROJECT_DIR).as_posix() for p in GRADER_DIR.rglob("*.py")
                      if "scripts" not in p.relative_to(GRADER_DIR).parts)
PINNED = ("jax==0.10.2", "jaxlib==0.10.2", "flax==0.12.8", "numpy==2.4.6", "rich==15.0.0")

# The kit's README; {title}: its exercise's (the kit of another exercise is another contract).
HANDOUT_README = """\
# {title}: student kit

1. Read INSTRUCTIONS.md.
2. Fill in batchnorm.py.
3. Check your work on the practice suite (one command; the first run makes .venv
   with the first Python 3.11 or newer it finds and installs the pinned
   dependencies into it):

       ./check.sh

   It needs Python 3.11 or newer and says what to install if it finds none;
   `PYTHON=/path/to/python3.12 ./check.sh` chooses the interpreter yourself.
   Without bash (Windows, say), run the same check with Python itself:

       python check.py

   (or `py -3.11 check.py`). Committing this folder to git? Its .gitignore leaves
   out .venv (hundreds of MB), caches and results files.

Working in a notebook (Jupyter, Colab)? Either write the module from a cell that
starts with `%%writefile batchnorm.py` and run `!python check.py` in the next one,
or grade the notebook itself: `python check.py homework.ipynb` (its code cells are
the submission; `%pip`/`!` lines and Colab's `google.colab`/`drive.mount` lines are
left out, and the report says so).

The practice suite has the same kinds of inputs as the hidden one your instructor
grades with, other numbers. Passing it is a good sign, not a guarantee.
"""

# The practice check: check.py does the work on any system, check.sh finds a Python and calls it
# (tests run both, with chosen PATHs).
CHECK_SCRIPT = Path(__file__).resolve().parent / "scripts" / "kit_check.sh"
CHECK_PY = Path(__file__).resolve().parent / "scripts" / "kit_check.py"
# What a student who commits the kit folder must not stage: the environment check.sh makes
# (755 MB, one file over GitHub's 100 MB limit), caches, and the reports a check writes.
KIT_GITIGNORE = """\
# Made by check.sh / check.py: never commit them.
.venv/
__pycache__/
*.py[cod]
.ipynb_checkpoints/
.pytest_cache/
results.json
*.results.json
junit.xml
"""
# The folder that holds the kit inside handout.zip, so that unzipping makes one folder.
KIT_FOLDER = "batchnorm-kit"
# The exercise's texts name files as the repository lays them out (exercise/...);
# the kit is flat and checked with check.sh. Rewritten in order, in the kit only.

# Gradescope's image set-up: a shell script of its own (tested in a fresh root).
SETUP_SCRIPT = Path(__file__).resolve().parent / "scripts" / "gradescope_setup.sh"

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for every submission; AUTOGRADER_ROOT and PYTHON exist for tests.
#
# Student code never runs as root here: the grader picks the strongest isolation
# the container allows (namespaces if unshare works, else a dedicated uid under
# Landlock and seccomp) and refuses anything weaker (--min-isolation uid). The
# results file is the grader's alone: any file already there is removed first,
# the grader writes its own atomically at the end, and if the grader could not
# run, this script (never student code) writes the fallback.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${PYTHON:-$ROOT/venv/bin/python}"
RESULTS="$ROOT/results/results.json"
mkdir -p "$ROOT/results"
chmod 700 "$ROOT/results"
rm -f "$RESULTS"
cd "$ROOT/source"
"$PYTHON" -m grader grade "$ROOT/submission" \\
    --secret-file "$ROOT/source/secret.txt" \\
    --min-isolation uid \\
    --results "$RESULTS.grader"
status=$?
if [ -s "$RESULTS.grader" ] && [ ! -L "$RESULTS.grader" ]; then
    mv -f "$RESULTS.grader" "$RESULTS"
else
    rm -f "$RESULTS.grader"
    # The grader could not even start: say so to the student (it writes its own
    # result, with the reason, for an upload without a file to grade).
    printf '{"score": 0, "output_format": "text", "output": "The autograder could not grade this submission (exit %s): upload your batchnorm.py or your notebook, and tell your instructor if this persists.", "tests": []}\\n' "$status" \\
        > "$RESULTS"
fi
exit 0
"""


def _files_for_runtime() -> dict[str, bytes]:
    files = {path: (PROJECT_DIR / path).read_bytes() for path in GRADER_FILES}
    requirements = list(PINNED)
    constraints = PROJECT_DIR / "constraints.txt"
    if constraints.is_file():  # every transitive dependency pinned too
        files["constraints.txt"] = constraints.read_bytes()
        requirements.insert(0, "-c constraints.txt")
    files["requirements.txt"] = ("\n".join(requirements) + "\n").encode()
    return files


def handout_files(exercise: str | None = None) -> dict[str, bytes]:
    """Relative path -> content of the student kit for ``exercise``."""
    chosen = get_exercise(exercise)
    files = _files_for_runtime()
    files["batchnorm.py"] = _for_kit(chosen.stub.read_bytes(), chosen)
    files["INSTRUCTIONS.md"] = _for_kit(chosen.instructions.read_bytes(), chosen)
    files["README.md"] = HANDOUT_README.format(title=chosen.title).encode()
    # The kit grades its own exercise: check.py names it.
    files["check.sh"] = CHECK_SCRIPT.read_bytes()
    check = CHECK_PY.read_bytes()
    marker = b'EXERCISE = "batchnorm_linen"'
    if marker not in check:  # a kit that would grade another exercise than its own
        raise RuntimeError(f"{CHECK_PY} no longer holds the line {marker.decode()}; the kit needs it to name its exercise")
    files["check.py"] = check.replace(marker, f'EXERCISE = "{chosen.name}"'.encode())
    files[".gitignore"] = KIT_GITIGNORE.encode()
    # ... and so does every `python -m grader` command typed inside the kit (grader.cli.kit_exercise).
    files["grader/_kit.py"] = (f'"""Written by `handout`: this kit\'s exercise, the default of every command in it."""\n\n'
                               f'EXERCISE = "{chosen.name}"\n').encode()
    return files


def _for_kit(text: bytes, chosen: Exercise) -> bytes:
    """An exercise file's text with the repository's paths replaced by the kit's."""
    own = ((f"python -m grader grade {_rel(chosen.stub)} --exercise {chosen.name}".encode(), b"./check.sh"),
           (f"python -m grader grade {_rel(chosen.stub)}".encode(), b"./check.sh"),
           (_rel(chosen.instructions).encode(), b"INSTRUCTIONS.md"), (_rel(chosen.stub).encode(), b"batchnorm.py"))
    for old, new in own:
        text = text.replace(old, new)
    return text


def _rel(path: Path) -> str:
    return path.relative_to(PROJECT_DIR).as_posix()


def gradescope_files(secret: str, exercise: str | None = None) -> dict[str, bytes]:
    """Relative path -> content of autograder.zip (setup.sh and run_autograder at the root)."""
    chosen = get_exercise(exercise)
    files = _files_for_runtime()
    files["setup.sh"] = SETUP_SCRIPT.read_bytes()
    files["run_autograder"] = RUN_AUTOGRADER.replace("    --min-isolation uid \\\n",
                                                     f"    --min-isolation uid --exercise {chosen.name} \\\n").encode()
    files["secret.txt"] = (secret.strip() + "\n").encode()
    return files


_EXECUTABLE = {"check.sh", "setup.sh", "run_autograder"}


def write_tree(files: dict[str, bytes], out: Path) -> None:
    """Write ``files`` into a new folder ``out`` (replaced whole if it exists)."""
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        for name, content in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(0o755 if name in _EXECUTABLE else 0o644)
        staging.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_zip(files: dict[str, bytes], out: Path, *, folder: str = "") -> None:
    """Write ``files`` into the zip ``out`` atomically, with executable bits kept.

    With ``folder``, every file is inside that one folder (the student kit:
    unzipping makes ``batchnorm-kit/``); without, at the root (Gradescope wants
    ``setup.sh`` and ``run_autograder`` there).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if folder:
            info = zipfile.ZipInfo(f"{folder}/", date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10  # and the MS-DOS directory flag
            archive.writestr(info, b"")
        for name in sorted(files):
            info = zipfile.ZipInfo(f"{folder}/{name}" if folder else name, date_time=(2026, 1, 1, 0, 0, 0))
            mode = 0o755 if name in _EXECUTABLE else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    from grader.report.gradescope import write_atomically_bytes

    write_atomically_bytes(out, buffer.getvalue())
