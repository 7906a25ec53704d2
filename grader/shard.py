"""A class too large for one machine: graded in shards, merged into one gradebook.

``batch --shard K/N`` grades only the students whose id hashes to shard K of N
(SHA-256 of the id, so a student's shard depends on the id alone, not on the
folder's order or on who else is in the class), into its own output folder,
with a manifest ``shard.json`` saying which students it owns, what they were
graded against (exercise, suite digest, grader version and code) and whether
the batch finished. Job-array engines give K themselves:

- SLURM (``sbatch --array=0-3`` or ``1-4``): ``SLURM_ARRAY_TASK_ID``,
  ``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_COUNT``;
- a Kubernetes Indexed Job: ``JOB_COMPLETION_INDEX`` (0-based), with
  ``--shards N`` (the Job's ``completions``);
- GitLab CI ``parallel: N``: ``CI_NODE_INDEX`` (1-based) and ``CI_NODE_TOTAL``;
- any other engine or matrix (GitHub Actions): ``--shard ${{ matrix.shard }}/N``.

``merge OUT1 ... OUTN --out CLASS`` checks that the folders are the N shards of
one class graded alike, each complete, then writes ``CLASS`` as an unsharded
batch would have (the same ``write_summaries``), in a temporary folder renamed
into place: a refused merge writes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grader.batch import MANIFEST, MANIFEST_FORMAT, STUDENTS, student_folders, write_summaries
from grader.safetext import clean


class ShardError(Exception):
    """A shard that cannot be chosen or merged (message for people)."""


def shard_of(student_id: str, count: int) -> int:
    """The shard (1 to ``count``) that owns ``student_id``: stable across runs,
    machines and Python versions, whatever else is in the class."""
    digest = hashlib.sha256(student_id.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


@dataclasses.dataclass(frozen=True)
class Shard:
    index: int  # 1 to count
    count: int
    source: str = "--shard"  # where K/N came from, for messages

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, student_id: str) -> bool:
        return shard_of(student_id, self.count) == self.index


def _integer(text: str, where: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ShardError(f"invalid {where} {clean(text)!r}: expected a whole number") from None


def _checked(index: int, count: int, source: str) -> Shard:
    if count < 1 or not 1 <= index <= count:
        raise ShardError(f"invalid shard {index}/{count} from {source}: expected K/N with 1 <= K <= N")
    return Shard(index, count, source)


def parse_shard(text: str, where: str = "--shard") -> Shard:
    """``K/N`` (1 <= K <= N), as given on the command line."""
    index, slash, count = text.partition("/")
    if not slash:
        raise ShardError(f"invalid {where} {clean(text)!r}: expected K/N, such as 1/4 (shard 1 of 4)")
    return _checked(_integer(index, where), _integer(count, where), where)


def resolve_shard(given: str | None, count: int | None, env: Mapping[str, str]) -> Shard | None:
    """This run's shard: ``--shard K/N``, else the job-array engine's variables
    (``--shards N`` where the engine gives only an index), else None (the whole class)."""
    if given is not None:
        shard = parse_shard(given)
        if count is not None and count != shard.count:
            raise ShardError(f"--shard {shard.label} and --shards {count} disagree; give one of them")
        return shard
    if "SLURM_ARRAY_TASK_ID" in env:
        return _slurm(env, count)
    if "JOB_COMPLETION_INDEX" in env:
        if count is None:
            raise ShardError("JOB_COMPLETION_INDEX is set but not the number of shards: add --shards N "
                             "(the Indexed Job's completions)")
        return _checked(_integer(env["JOB_COMPLETION_INDEX"], "JOB_COMPLETION_INDEX") + 1, count,
                        "JOB_COMPLETION_INDEX")
    if "CI_NODE_INDEX" in env and "CI_NODE_TOTAL" in env:
        total = _integer(env["CI_NODE_TOTAL"], "CI_NODE_TOTAL")
        _agree(count, total, "CI_NODE_TOTAL")
        return _checked(_integer(env["CI_NODE_INDEX"], "CI_NODE_INDEX"), total, "CI_NODE_INDEX/CI_NODE_TOTAL")
    if count is not None:
        raise ShardError(f"--shards {count} needs this run's index: --shard K/{count}, or run it as a job array "
                         "(SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or CI_NODE_INDEX)")
    return None


def _agree(count: int | None, total: int, where: str) -> None:
    if count is not None and count != total:
        raise ShardError(f"--shards {count} disagrees with {where}={total}; give the same number or leave --shards out")


def _slurm(env: Mapping[str, str], count: int | None) -> Shard:
    task = _integer(env["SLURM_ARRAY_TASK_ID"], "SLURM_ARRAY_TASK_ID")
    if "SLURM_ARRAY_TASK_COUNT" not in env:
        raise ShardError("SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: give --shard K/N")
    total = _integer(env["SLURM_ARRAY_TASK_COUNT"], "SLURM_ARRAY_TASK_COUNT")
    first = _integer(env.get("SLURM_ARRAY_TASK_MIN", "0"), "SLURM_ARRAY_TASK_MIN")
    last = _integer(env.get("SLURM_ARRAY_TASK_MAX", str(first + total - 1)), "SLURM_ARRAY_TASK_MAX")
    step = _integer(env.get("SLURM_ARRAY_TASK_STEP", "1"), "SLURM_ARRAY_TASK_STEP")
    if step != 1 or last - first + 1 != total:
        raise ShardError(f"the SLURM array is not one run of consecutive task ids ({first}-{last}, step {step}, "
                         f"{total} tasks): submit it as --array=0-{total - 1}, or give --shard K/N")
    _agree(count, total, "SLURM_ARRAY_TASK_COUNT")
    return _checked(task - first + 1, total, "SLURM_ARRAY_TASK_ID")


@dataclasses.dataclass
class _Part:
    folder: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return clean(str(self.folder))


def _read_part(folder: Path) -> _Part:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardError(f"{clean(str(folder))} is not a batch output folder (it has no {MANIFEST}); give the "
                         "folders that `batch --shard K/N --out ...` wrote") from None
    except (OSError, ValueError) as err:
        raise ShardError(f"cannot read {clean(str(path))}: {getattr(err, 'strerror', None) or err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ShardError(f"{clean(str(path))} is not a shard manifest this grader reads (format "
                         f"{MANIFEST_FORMAT}); re-run that shard with this grader")
    students = manifest.get("students")
    if not isinstance(students, list) or not all(isinstance(sid, str) for sid in students):
        raise ShardError(f"{clean(str(path))} does not list its students; re-run that shard")
    manifest["shard"] = parse_shard(str(manifest.get("shard")), f"shard in {path}").label
    return _Part(folder, manifest)


def _same(parts: list[_Part], key: Callable[[dict[str, Any]], Any], what: str, advice: str) -> None:
    first = parts[0]
    for part in parts[1:]:
        if key(part.manifest) != key(first.manifest):
            raise ShardError(f"{first.name} and {part.name} were graded with different {what} "
                             f"({clean(str(key(first.manifest)))} and {clean(str(key(part.manifest)))}); {advice}")


def check_parts(folders: list[Path]) -> list[_Part]:
    """The shards, each read and checked: one class, graded alike, each shard
    once, none missing, each complete. Raises ShardError naming what is wrong."""
    parts = [_read_part(folder) for folder in folders]
    _same(parts, lambda m: m.get("exercise"), "exercises", "grade every shard with the same --exercise")
    _same(parts, lambda m: m.get("suite"), "suites (secrets)", "grade every shard with the same secret")
    _same(parts, lambda m: (m.get("grader") or {}).get("version"), "grader versions",
          "grade every shard with the same grader")
    _same(parts, lambda m: (m.get("grader") or {}).get("code"), "grader code (same version, edited sources)",
          "grade every shard with the same grader")
    _same(parts, lambda m: (m.get("class") or {}).get("digest"), "classes (the submissions folders differ)",
          "grade every shard from the same submissions folder")
    seen: dict[str, _Part] = {}
    for part in parts:
        label = str(part.manifest.get("shard"))
        if label in seen:
            raise ShardError(f"shard {clean(label)} is given twice ({seen[label].name} and {part.name}); "
                             "give each shard's folder once")
        seen[label] = part
    counts = {int(str(part.manifest.get("shard")).split("/")[1]) for part in parts}
    if len(counts) != 1:
        raise ShardError(f"the folders are shards of different splits ({', '.join(sorted(seen))}); "
                         "grade every shard with the same N")
    (count,) = counts
    missing = [f"{k}/{count}" for k in range(1, count + 1) if f"{k}/{count}" not in seen]
    if missing:
        raise ShardError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"{'are' if len(missing) > 1 else 'is'} missing: give the output folder of every shard "
                         f"(1/{count} to {count}/{count})")
    for part in parts:
        manifest = part.manifest
        if not manifest.get("complete"):
            raise ShardError(f"shard {clean(str(manifest.get('shard')))} in {part.name} is incomplete "
                             f"({manifest.get('graded', 0)} of {len(manifest.get('students', []))} students graded: "
                             "its batch did not finish); run that shard again, then merge")
    size = (parts[0].manifest.get("class") or {}).get("size")
    owned = sum(len(part.manifest.get("students", [])) for part in parts)
    if owned != size:
        raise ShardError(f"the shards hold {owned} students but their class has {size}; "
                         "grade every shard from the same submissions folder")
    return parts


def _results(part: _Part) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each owned student's folder and results.json data, as the shard wrote them."""
    owned = [str(sid) for sid in part.manifest.get("students", [])]
    label = str(part.manifest.get("shard"))
    index, count = (int(x) for x in label.split("/"))
    folders = student_folders(owned)
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for student_id in owned:
        if count > 1 and shard_of(student_id, count) != index:
            raise ShardError(f"{part.name} lists {clean(student_id)!r}, who belongs to shard "
                             f"{shard_of(student_id, count)}/{count}, not {label}; re-run that shard")
        folder = part.folder / STUDENTS / folders[student_id]
        try:
            data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
            if data["extra_data"]["student"] != student_id:
                raise ValueError("another student's results")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ShardError(f"shard {clean(label)} in {part.name} is incomplete: the results of "
                             f"{clean(student_id)!r} cannot be read ({type(err).__name__}); run that shard again") from None
        found[student_id] = (folder, data)
    return found


def merge(folders: list[Path], out: Path) -> dict[str, dict[str, Any]]:
    """Merge shard folders into ``out`` (replaced whole, or left untouched if refused)."""
    if not folders:
        raise ShardError("give the output folders of the shards to merge")
    resolved_out = out.resolve()
    for folder in folders:
        here = folder.resolve()
        if here == resolved_out or resolved_out in here.parents or here in resolved_out.parents:
            raise ShardError(f"--out {clean(str(out))} must not be, hold or be inside a shard's folder "
                             f"({clean(str(folder))})")
    _replaceable(out)
    parts = check_parts(folders)
    everyone: dict[str, tuple[Path, dict[str, Any]]] = {}
    for part in parts:
        everyone.update(_results(part))
    graded = {sid: everyone[sid][1] for sid in sorted(everyone)}
    class_folders = student_folders(graded)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.merging-", dir=out.parent))
    try:
        for student_id, (source, _) in everyone.items():
            target = staging / STUDENTS / class_folders[student_id]
            target.mkdir(parents=True)
            for name in ("results.json", "feedback.html"):
                if (source / name).is_file():
                    shutil.copyfile(source / name, target / name)
        write_summaries(staging, graded)
        first = parts[0].manifest
        manifest = {**first, "shard": "1/1", "sharded": False, "students": sorted(graded), "graded": len(graded),
                    "complete": True, "merged_from": [str(part.manifest["shard"]) for part in parts]}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return graded


def _replaceable(out: Path) -> None:
    """``out`` is replaced whole, so it must be new, empty, or an earlier batch's or merge's output."""
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise ShardError(f"--out {clean(str(out))} exists and is not a folder")
    if any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ShardError(f"--out {clean(str(out))} holds files that are not a batch's output (no {MANIFEST}); "
                         "merge into a new folder, or into the one an earlier merge wrote")


def _swap_into_place(staging: Path, out: Path) -> None:
    """``staging`` becomes ``out``; an old ``out`` is removed only once the new one is there."""
    os.chmod(staging, 0o755)
    if not os.path.lexists(out):
        os.rename(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / "previous")
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old / "previous", out)  # the earlier merge stays as it was
        os.rmdir(old)
        raise
    shutil.rmtree(old, ignore_errors=True)
