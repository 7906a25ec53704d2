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

import dataclasses
import hashlib
import json
import os
import re
import stat
import time
from pathlib import Path

SUBMISSION_FILE = "batchnorm.py"
SUFFIXES = (".py", ".ipynb")
MAX_DEPTH = 5
MAX_ENTRIES = 5000  # names listed in an upload, folders included
MAX_READ = 4 << 20  # a submission larger than this is not a BatchNorm
MAX_CANDIDATES = 200  # .py/.ipynb files read to find the one that defines the contract
MAX_TOTAL_BYTES = 64 << 20  # their sizes together
MAX_WALK_SECONDS = 10.0
_TOO_BIG = ("the upload holds {what}, more than a BatchNorm exercise needs, so it was not searched; "
            f"upload only your {SUBMISSION_FILE} or your notebook")
# The grading process itself parses a notebook's JSON (about 25 bytes of memory a
# byte): anything larger is refused before it is parsed, with a way out.
MAX_NOTEBOOK_BYTES = 8 << 20
_SKIP_DIRS = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", "node_modules", ".git", ".venv", "venv"}
_DEFINES = re.compile(rb"^[ \t]*(class[ \t]+MyBatchNorm\b|def[ \t]+init_and_apply\b)", re.M)
# Cell magics whose body is still Python: the magic line goes, the body stays.
_PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun")
_WRITEFILE = re.compile(r"^\s*%%writefile(?P<append>\s+(?:-a|--append))?\s+(?P<file>\S+)\s*$")
_FUTURE = re.compile(r"^from\s+__future__\s+import\b")
# Colab-only: importing google.colab (anywhere but Colab: ModuleNotFoundError) and mounting Drive.
_COLAB = re.compile(r"^\s*(?:from\s+google\.colab\b|from\s+google\s+import\s+colab\b|import\s+google\.colab\b"
                    r"|drive\.mount\s*\(.*\)\s*(?:#.*)?$)")


class NotFound(Exception):
    """No single submission file in a folder (the message says what was found)."""


def find(folder: Path) -> Path:
    """The one file in ``folder`` (at any depth up to MAX_DEPTH) to grade."""
    top = folder / SUBMISSION_FILE
    if os.path.lexists(top):
        return top  # a link or a special file there is refused by the grade itself, as a result
    listed = _files(folder)
    found = [path for path in listed if _defines_contract(path)]
    if len(found) == 1:
        return found[0]
    names = ", ".join(p.relative_to(folder).as_posix() for p in found[:6]) + (" ..." if len(found) > 6 else "")
    if found:
        raise NotFound(f"several files define MyBatchNorm or init_and_apply ({names}); upload only one "
                       f"(ideally named {SUBMISSION_FILE})")
    others = [p.relative_to(folder).as_posix() for p in listed][:6]
    seen = f" (found {', '.join(others)}, none of which defines them)" if others else " (found no .py or .ipynb file)"
    raise NotFound(f"no file defines MyBatchNorm or init_and_apply{seen}; upload your {SUBMISSION_FILE} "
                   "or your notebook")


def _files(folder: Path) -> list[Path]:
    """Regular .py/.ipynb files under ``folder`` that are worth reading, links not
    followed, in a stable order.

    The walk is bounded before a byte is read: at most MAX_ENTRIES names and
    MAX_WALK_SECONDS, at most MAX_CANDIDATES candidate files, and their sizes
    (the larger of the apparent size and the blocks on disk, so that a sparse
    file counts at what reading it would cost) at most MAX_TOTAL_BYTES together.
    An upload past any bound is refused (NotFound, saying which), not read.
    A file larger than MAX_READ is no BatchNorm: listed, never read.
    """
    out: list[Path] = []
    entries = total = 0
    deadline = time.monotonic() + MAX_WALK_SECONDS
    stack = [(folder, 0)]
    while stack:
        here, depth = stack.pop()
        try:
            with os.scandir(here) as listing:
                names = []
                for entry in listing:
                    entries += 1
                    if entries > MAX_ENTRIES:
                        raise NotFound(_TOO_BIG.format(what=f"more than {MAX_ENTRIES} files and folders"))
                    names.append(entry)
        except OSError:
            continue
        if time.monotonic() > deadline:
            raise NotFound(_TOO_BIG.format(what=f"too many files to list in {MAX_WALK_SECONDS:g} s"))
        subdirs = []
        for entry in sorted(names, key=lambda e: e.name):
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                if depth < MAX_DEPTH and entry.name not in _SKIP_DIRS:
                    subdirs.append((Path(entry.path), depth + 1))
            elif entry.is_file(follow_symlinks=False) and entry.name.lower().endswith(SUFFIXES):
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                size = max(info.st_size, getattr(info, "st_blocks", 0) * 512)
                if size > MAX_READ:
                    continue  # too large to be a BatchNorm: never read
                total += size
                out.append(Path(entry.path))
                if len(out) > MAX_CANDIDATES:
                    raise NotFound(_TOO_BIG.format(what=f"more than {MAX_CANDIDATES} .py and .ipynb files"))
                if total > MAX_TOTAL_BYTES:
                    raise NotFound(_TOO_BIG.format(
                        what=f"more than {MAX_TOTAL_BYTES >> 20} MiB of .py and .ipynb files"))
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


def file_digest(path: Path, limit: int) -> str:
    """SHA-256 of a regular file's size and of every byte the grader can read
    (its first ``limit``), streamed, never through a link (as read_bytes).

    A change anywhere in what is graded changes the digest; bytes past ``limit``
    are never read by the grade, so they are not hashed (a 1 TB sparse file
    costs nothing)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        digest = hashlib.sha256(f"{info.st_size}\0".encode())
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class Notebook:
    """A notebook read as one Python file: its text, a note for the student, and where each of
    its lines came from (cell number counted over all cells, as the notebook shows them; line
    in that cell), so that an error is reported as "cell 3, line 2"."""

    source: bytes
    note: str
    lines: tuple[tuple[int, int], ...]  # line n of source (1-based) is lines[n - 1]; (0, 0): added here

    def where(self, line: int) -> str | None:
        """ "cell 3, line 2" for line ``line`` of :attr:`source`, or None for a line the grader added."""
        if 1 <= line <= len(self.lines) and self.lines[line - 1][0]:
            cell, within = self.lines[line - 1]
            return f"cell {cell}, line {within}"
        return None


def notebook_source(data: bytes, name: str = "the notebook") -> tuple[bytes, str]:
    """A notebook's code cells as one Python file, and a note for the student (see :func:`read_notebook`)."""
    notebook = read_notebook(data, name)
    return notebook.source, notebook.note


def _cells(data: bytes, name: str) -> list[tuple[int, list[str]]]:
    """(cell number, lines) of each code cell. Raises ValueError (for people) when ``data`` is not a notebook,
    or is larger than MAX_NOTEBOOK_BYTES (checked before a byte is parsed)."""
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
    out = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) else source
        if isinstance(text, str):
            out.append((index + 1, text.splitlines()))
    return out


def _written_module(cells: list[tuple[int, list[str]]]) -> tuple[list[str], list[tuple[int, int]], str] | None:
    """The module a ``%%writefile batchnorm.py`` cell writes (the last one wins, ``-a`` appends, as in
    IPython), else the one written by a single ``%%writefile`` cell that defines the contract."""
    written: dict[str, tuple[list[str], list[tuple[int, int]], list[int]]] = {}
    for number, lines in cells:
        match = _WRITEFILE.match(lines[0]) if lines else None
        if not match:
            continue
        target = os.path.basename(match.group("file").strip("'\""))
        body = lines[1:]
        origin = [(number, i + 2) for i in range(len(body))]
        if match.group("append") and target in written:
            old_body, old_origin, old_cells = written[target]
            written[target] = (old_body + body, old_origin + origin, old_cells + [number])
        else:
            written[target] = (body, origin, [number])
    if SUBMISSION_FILE in written:
        target = SUBMISSION_FILE
    else:
        defining = [t for t, (body, _, _) in written.items() if _DEFINES.search("\n".join(body).encode())]
        if len(defining) != 1:
            return None
        target = defining[0]
    body, origin, numbers = written[target]
    cells_named = f"cell{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"
    return body, origin, f"Graded {target} as %%writefile in {cells_named} of {{name}} writes it (the other cells are not the submission)"


def read_notebook(data: bytes, name: str = "the notebook") -> Notebook:
    """A notebook's code as one Python file, as Jupyter would run it.

    - A ``%%writefile batchnorm.py`` cell is the submission (it writes the file a check then
      grades); otherwise the code cells, joined.
    - IPython magics and shell lines (``%pip``, ``!ls``) and Colab-only lines (``google.colab``
      imports, ``drive.mount(...)``) are left out, with a note: they run only in a notebook.
    - ``from __future__`` lines, valid at the top of a cell in Jupyter, are moved to the top.
    Raises ValueError (with a message for people) when ``data`` is not a notebook.
    """
    cells = _cells(data, name)
    written = _written_module(cells)
    if written is not None:  # a file, as written: graded verbatim
        body, body_origin, note = written
        return Notebook("\n".join(body).encode("utf-8") + b"\n", note.format(name=name) + ".", tuple(body_origin))
    kept: list[str] = []
    origin: list[tuple[int, int]] = []
    future: list[tuple[str, tuple[int, int]]] = []
    dropped = colab = 0
    first_cell: int | None = None  # the first cell holding code
    moved: list[int] = []  # cells whose from __future__ line came after another cell's code
    units = []
    for number, lines in cells:
        first = lines[0].strip() if lines else ""
        if first.startswith("%%") and not first.startswith(_PYTHON_CELL_MAGICS):
            dropped += len(lines)  # %%bash, %%writefile of something else, ...: not Python
            continue
        units.append((number, lines, [(number, i + 1) for i in range(len(lines))]))
    note = f"Graded the {len(cells)} code cell{'s' if len(cells) != 1 else ''} of {name}"
    for number, lines, lines_origin in units:
        kept.append(f"# --- code cell {number} ---")
        origin.append((0, 0))
        for line, where in zip(lines, lines_origin):
            stripped = line.lstrip()
            indent = line[:len(line) - len(stripped)]
            if first_cell is None and line.strip() and not stripped.startswith(("%", "!")):
                first_cell = where[0]
            if _FUTURE.match(line):
                future.append((line, where))
                if where[0] != first_cell:  # after another cell's code: Python alone would refuse it
                    moved.append(where[0])
                line = ""
            elif stripped.startswith(("%", "!")):
                dropped += 1
                line = f"{indent}pass" if indent else ""  # keeps a block that held only this line valid
            elif _COLAB.match(line):
                colab += 1
                line = f"{indent}pass  # left out: Colab only"
            kept.append(line)
            origin.append(where)
        kept.append("")
        origin.append((0, 0))
    kept = [line for line, _ in future] + kept
    origin = [where for _, where in future] + origin
    if dropped:
        note += f"; {dropped} IPython magic or shell line{'s' if dropped != 1 else ''} (% or !) left out"
    if colab:
        note += (f"; {colab} Colab-only line{'s' if colab != 1 else ''} (google.colab, drive.mount) left out: "
                 "the grader reads no Drive, so define everything in the notebook or the uploaded file")
    if moved:
        note += (f"; {len(moved)} from __future__ line{'s' if len(moved) != 1 else ''} "
                 f"(cell {', '.join(map(str, moved))}) moved to the top")
    return Notebook("\n".join(kept).encode("utf-8") + b"\n", note + ".", tuple(origin))
