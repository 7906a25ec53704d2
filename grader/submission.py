"""Finding the student's code, whatever the upload is called, and reading it as Python.

Students upload ``BatchNorm.py``, ``batchnorm (1).py`` (a browser's duplicate
name), a zip with a folder inside (``hw3/batchnorm.py``) or a Jupyter notebook.
In a folder the grader takes the one ``.py`` or ``.ipynb`` file that defines
``MyBatchNorm`` or ``init_and_apply`` (found by reading, never by importing),
``batchnorm.py`` at the top first; several candidates are refused with their
names, so that nothing is graded by guesswork. A notebook's code cells become
the submission; IPython magics and shell lines (``%pip``, ``!ls``) are left out,
with a note.

Everything here reads untrusted files: links are never followed, folders are
walked to a bounded depth and size, and a broken notebook is a message.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

SUBMISSION_FILE = "batchnorm.py"
SUFFIXES = (".py", ".ipynb")
MAX_DEPTH = 5
MAX_ENTRIES = 5000
MAX_READ = 4 << 20  # a submission larger than this is not a BatchNorm
# The grading process itself parses a notebook's JSON (about 25 bytes of memory a
# byte): anything larger is refused before it is parsed, with a way out.
MAX_NOTEBOOK_BYTES = 8 << 20
_SKIP_DIRS = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", "node_modules", ".git", ".venv", "venv"}
_DEFINES = re.compile(rb"^[ \t]*(class[ \t]+MyBatchNorm\b|def[ \t]+init_and_apply\b)", re.M)
# Cell magics whose body is still Python: the magic line goes, the body stays.
_PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun")


class NotFound(Exception):
    """No single submission file in a folder (the message says what was found)."""


def find(folder: Path) -> Path:
    """The one file in ``folder`` (at any depth up to MAX_DEPTH) to grade."""
    top = folder / SUBMISSION_FILE
    if os.path.lexists(top):
        return top  # a link or a special file there is refused by the grade itself, as a result
    found = [path for path in _files(folder) if _defines_contract(path)]
    if len(found) == 1:
        return found[0]
    names = ", ".join(p.relative_to(folder).as_posix() for p in found[:6]) + (" ..." if len(found) > 6 else "")
    if found:
        raise NotFound(f"several files define MyBatchNorm or init_and_apply ({names}); upload only one "
                       f"(ideally named {SUBMISSION_FILE})")
    others = [p.relative_to(folder).as_posix() for p in _files(folder)][:6]
    seen = f" (found {', '.join(others)}, none of which defines them)" if others else " (found no .py or .ipynb file)"
    raise NotFound(f"no file defines MyBatchNorm or init_and_apply{seen}; upload your {SUBMISSION_FILE} "
                   "or your notebook")


def _files(folder: Path) -> list[Path]:
    """Regular .py/.ipynb files under ``folder``, links not followed, in a stable order."""
    out: list[Path] = []
    budget = MAX_ENTRIES
    stack = [(folder, 0)]
    while stack and budget > 0:
        here, depth = stack.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            budget -= 1
            if budget <= 0:
                break
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                if depth < MAX_DEPTH and entry.name not in _SKIP_DIRS:
                    subdirs.append((Path(entry.path), depth + 1))
            elif entry.is_file(follow_symlinks=False) and entry.name.lower().endswith(SUFFIXES):
                out.append(Path(entry.path))
        stack.extend(reversed(subdirs))
    return out


def _defines_contract(path: Path) -> bool:
    try:
        data = read_bytes(path)
    except OSError:
        return False
    if path.suffix.lower() == ".ipynb":
        try:
            data, _ = notebook_source(data, path.name)
        except ValueError:
            return False
    return bool(_DEFINES.search(data))


def read_bytes(path: Path, limit: int = MAX_READ) -> bytes:
    """A regular file's first ``limit`` bytes, reached without following a link at
    the last step (O_NOFOLLOW) and re-checked on the open descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(limit)
    finally:
        os.close(fd)


def notebook_source(data: bytes, name: str = "the notebook") -> tuple[bytes, str]:
    """A notebook's code cells as one Python file, and a note for the student.

    Raises ValueError (with a message for people) when ``data`` is not a notebook,
    or is larger than MAX_NOTEBOOK_BYTES (checked before a byte is parsed).
    """
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"{name} is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB (notebooks that large hold "
                         "outputs, not code); clear its outputs (Edit > Clear All Outputs) and save it again")
    try:
        notebook = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ValueError(f"{name} is not a readable Jupyter notebook ({type(err).__name__})") from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise ValueError(f"{name} is not a Jupyter notebook (it has no list of cells)")
    parts: list[str] = []
    dropped = code_cells = 0
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) else source
        if not isinstance(text, str):
            continue
        code_cells += 1
        lines = text.splitlines()
        first = lines[0].strip() if lines else ""
        if first.startswith("%%") and not first.startswith(_PYTHON_CELL_MAGICS):
            dropped += len(lines)  # %%bash, %%writefile, ...: not Python
            continue
        kept = []
        for line in lines:
            if line.lstrip().startswith(("%", "!")):
                dropped += 1
                kept.append("")  # keep line numbers close to the cell's own
            else:
                kept.append(line)
        parts.append(f"# --- code cell {index + 1} ---\n" + "\n".join(kept) + "\n")
    note = f"Graded the {code_cells} code cell{'s' if code_cells != 1 else ''} of {name}"
    if dropped:
        note += f"; {dropped} IPython magic or shell line{'s' if dropped != 1 else ''} (% or !) left out"
    return "\n".join(parts).encode("utf-8"), note + "."
