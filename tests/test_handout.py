"""The student kit as a student gets it, for every exercise: texts that name only files
in the kit and speak of its own exercise, a check script that grades that exercise and
finds a Python 3.11+ (or says what to install), and a zip that unpacks into one folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader.bundle import KIT_FOLDER
from grader.exercises import DEFAULT, EXERCISES, Exercise
from tests.conftest import ROOT, exercise_args, run_cli

# Path-like words: anything with a slash, or a name with a file extension.
PATH_WORD = re.compile(r"(?<![\w/.:-])(?:\.{1,2}/)?(?:[\w.-]+/)+[\w.-]*"
                       r"|(?<![\w/.:-])[\w.-]+\.(?:md|py|sh|txt|ipynb|json|xml|zip|toml|yml|yaml)\b")
NOT_PATHS = {"read/write"}  # words with a slash in the stub's comments
MADE_BY_CHECK_SH = {".venv/bin/python", ".venv/.installed", "r.json", "homework.ipynb"}  # made when it runs
# (r.json, homework.ipynb: examples of the student's own names)
STUDENT_TEXTS = ("README.md", "INSTRUCTIONS.md", "batchnorm.py", "check.sh", "check.py")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, exercise: Exercise) -> Path:
    """The exercise's kit as `handout --out DIR` writes it."""
    out = tmp_path_factory.mktemp("handout") / "kit"
    run = run_cli("handout", "--out", str(out), *exercise_args(exercise))
    assert run.code == 0, run.stderr
    return out


def _paths_named(text: str) -> set[str]:
    return {word.rstrip(".") for word in PATH_WORD.findall(text)} - NOT_PATHS


def test_every_path_the_kit_names_is_in_the_kit(kit: Path):
    named = {}
    for name in STUDENT_TEXTS:
        text = (kit / name).read_text()
        assert "exercise/" not in text, f"{name} names the repository's layout"
        named[name] = _paths_named(text)
    assert "INSTRUCTIONS.md" in named["batchnorm.py"] and "./check.sh" in named["INSTRUCTIONS.md"]
    for name, paths in named.items():
        for path in paths - MADE_BY_CHECK_SH:
            assert (kit / path).exists(), f"{name} names {path}, which the kit does not have"
    # The stub's NotImplementedError message (the grader shows it) names a file of the kit.
    message = re.search(r'NOT_IMPLEMENTED = \(\s*"([^"]*)"', (kit / "batchnorm.py").read_text())
    assert message is not None and _paths_named(message.group(1)) == {"INSTRUCTIONS.md"}


def test_the_kit_is_its_own_exercise_and_nothing_else(kit: Path, exercise: Exercise):
    """The stub and instructions are the exercise's own, changed only where they name the repository's
    paths; the README names the exercise; no exercise's reference is anywhere in it."""
    for name, source in (("batchnorm.py", exercise.stub), ("INSTRUCTIONS.md", exercise.instructions)):
        handed, original = (kit / name).read_text().splitlines(), source.read_text().splitlines()
        assert len(handed) == len(original), name
        for theirs, ours in zip(original, handed):
            assert theirs == ours or "exercise/" in theirs, f"{name} changed a line that names no path: {theirs!r}"
    assert exercise.title in (kit / "README.md").read_text(), "the kit's README does not say which exercise it is"
    references = [e.reference.read_text() for e in EXERCISES.values()]
    for path in kit.rglob("*"):
        if path.is_file():
            assert not any(reference in path.read_text(errors="replace") for reference in references), path


def test_the_exercise_names_existing_files_in_the_repository_too(exercise: Exercise):
    """The same texts in the repository: each path exists from the root or next to the text."""
    for text_file in (exercise.instructions, exercise.stub):
        for path in _paths_named(text_file.read_text()):
            assert (ROOT / path).exists() or (text_file.parent / path).exists(), f"{text_file.name} names {path}"


def test_the_zip_unpacks_into_one_folder(tmp_path: Path, kit: Path, exercise: Exercise):
    out = tmp_path / "handout.zip"
    run = run_cli("handout", "--out", str(out), *exercise_args(exercise))
    assert run.code == 0 and f"{KIT_FOLDER}/" in run.stdout
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert {name.split("/", 1)[0] for name in names} == {KIT_FOLDER}
        assert (archive.getinfo(f"{KIT_FOLDER}/check.sh").external_attr >> 16) & 0o111
        archive.extractall(tmp_path / "unzipped")
    assert [p.name for p in (tmp_path / "unzipped").iterdir()] == [KIT_FOLDER]
    unzipped = tmp_path / "unzipped" / KIT_FOLDER
    files = {p.relative_to(unzipped).as_posix(): p.read_bytes() for p in unzipped.rglob("*") if p.is_file()}
    assert files == {p.relative_to(kit).as_posix(): p.read_bytes() for p in kit.rglob("*") if p.is_file()}  # the DIR form


# --- check.sh choosing an interpreter --------------------------------------------------

BASH = shutil.which("bash") or "/bin/bash"
REAL_PYTHON = sys.executable  # has the pinned packages, like the .venv check.sh makes
FAKE_VENV = """\
import os, sys
bin_dir = os.path.join(sys.argv[1], "bin")
os.makedirs(bin_dir)
with open(os.path.join(bin_dir, "python"), "w") as f:
    f.write('''#!{bash}
echo "venv-python $*" >> {log}
if [ "$1 $2" = "-m pip" ]; then exit 0; fi  # the packages are there already; no network in tests
exec {python} "$@"
''')
os.chmod(os.path.join(bin_dir, "python"), 0o755)
"""
GOOD_SHIM = """\
#!{bash}
echo "${{0##*/}} $*" >> {log}
if [ "$1 $2" = "-m venv" ]; then exec {python} {fake_venv} "$3"; fi
exec {python} "$@"
"""
OLD_SHIM = """\
#!{bash}
echo "${{0##*/}} $*" >> {log}
echo 3.10.12
exit 1
"""


def _sandbox(tmp_path: Path, kit: Path, good: tuple[str, ...] = (), old: tuple[str, ...] = ()) -> tuple[Path, dict[str, str], Path]:
    """A copy of the kit and a PATH holding bash, env and the named fake interpreters, nothing else."""
    work = tmp_path / "kit"
    shutil.copytree(kit, work)
    tools, fakes = tmp_path / "tools", tmp_path / "fakebin"
    tools.mkdir()
    fakes.mkdir()
    for tool in ("bash", "env"):
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    log = tmp_path / "calls.log"
    log.touch()
    fake_venv = tmp_path / "fake_venv.py"
    fake_venv.write_text(FAKE_VENV.format(bash=BASH, log=log, python=REAL_PYTHON))
    for name, template in [*((n, GOOD_SHIM) for n in good), *((n, OLD_SHIM) for n in old)]:
        shim = fakes / name
        shim.write_text(template.format(bash=BASH, log=log, python=REAL_PYTHON, fake_venv=fake_venv))
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADER_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{fakes}{os.pathsep}{tools}"
    return work, env, log


def _check(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./check.sh", *args], cwd=work, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_check_sh_uses_python3_when_it_is_the_only_one_and_grades(tmp_path: Path, kit: Path, exercise: Exercise):
    work, env, log = _sandbox(tmp_path, kit, good=("python3",))
    run = _check(work, env, "--results", "r.json")
    assert run.returncode == 0, run.stdout + run.stderr
    # It grades the stub of its own exercise, on the practice suite.
    data = json.loads((work / "r.json").read_text())
    assert data["extra_data"]["exercise"] == exercise.name and data["extra_data"]["suite"] == "practice"
    assert data["score"] == 0 and data["max_score"] == exercise.max_score
    assert f"check: setting up .venv with {tmp_path / 'fakebin' / 'python3'}" in run.stdout
    calls = log.read_text()
    assert "python3 -m venv .venv" in calls and "venv-python -m pip install --quiet -r requirements.txt" in calls
    # The stub graded: its message names a file the student has.
    assert "not implemented yet" in run.stdout and "(see INSTRUCTIONS.md)" in run.stdout
    assert (work / "INSTRUCTIONS.md").is_file() and (work / ".venv" / ".installed").is_file()
    # Set up once: the next run goes straight to the grader.
    again = _check(work, env, "--help")
    assert again.returncode == 0 and "setting up" not in again.stdout
    assert log.read_text().count("-m venv") == 1


# Choosing an interpreter is the same script in every kit: checked in the default exercise's.
@pytest.mark.parametrize("exercise", [DEFAULT], indirect=True)
def test_check_sh_tries_versions_in_order_and_skips_old_ones(tmp_path: Path, kit: Path):
    work, env, log = _sandbox(tmp_path, kit, good=("python3.12", "python3", "python"), old=("python3.11",))
    run = _check(work, env, "--help")  # the grader's help: set-up happens, no grading needed
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"check: setting up .venv with {tmp_path / 'fakebin' / 'python3.12'}" in run.stdout
    assert "python3.12 -m venv .venv" in log.read_text()


@pytest.mark.parametrize("exercise", [DEFAULT], indirect=True)
def test_check_sh_without_any_python_says_what_to_install(tmp_path: Path, kit: Path):
    work, env, _ = _sandbox(tmp_path, kit)
    run = _check(work, env)
    assert run.returncode not in (0, 127) and run.returncode == 2, run.returncode
    assert "needs Python 3.11 or newer" in run.stderr and "PYTHON=/path/to/python3.11 ./check.sh" in run.stderr
    assert "command not found" not in run.stderr and not (work / ".venv").exists()


@pytest.mark.parametrize("exercise", [DEFAULT], indirect=True)
def test_check_sh_names_the_pythons_too_old(tmp_path: Path, kit: Path):
    work, env, _ = _sandbox(tmp_path, kit, old=("python3",))
    run = _check(work, env)
    assert run.returncode == 2
    assert "too old or not working: python3 (3.10.12)" in run.stderr
    env["PYTHON"] = str(tmp_path / "fakebin" / "python3")
    chosen = _check(work, env)
    assert chosen.returncode == 2 and "is not Python 3.11 or newer" in chosen.stderr and "(it is 3.10.12)" in chosen.stderr


# --- check.py: the same check without bash (Windows) ------------------------------------

# Fakes written in Python (no shell anywhere): the interpreter that makes .venv, and the
# environment's own interpreter, which pretends to install (the packages are already there).
PY_FAKE_PYTHON = """\
#!{python}
import os, sys
with open({log!r}, "a") as f:
    f.write("python " + " ".join(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["-m", "venv"]:
    bin_dir = os.path.join(sys.argv[3], "bin")
    os.makedirs(bin_dir)
    with open(os.path.join(bin_dir, "python"), "w") as f:
        f.write({venv_python!r})
    os.chmod(os.path.join(bin_dir, "python"), 0o755)
    sys.exit(0)
os.execv({python!r}, [{python!r}, *sys.argv[1:]])
"""
PY_FAKE_VENV_PYTHON = """\
#!{python}
import os, sys
with open({log!r}, "a") as f:
    f.write("venv-python " + " ".join(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["-m", "pip"]:
    sys.exit(0)
os.execv({python!r}, [{python!r}, *sys.argv[1:]])
"""


# check.sh runs check.py in every exercise's kit (above); without bash, checked in the default one.
@pytest.mark.parametrize("exercise", [DEFAULT], indirect=True)
def test_check_py_sets_up_and_grades_without_bash(tmp_path: Path, kit: Path, exercise: Exercise):
    work = tmp_path / "kit"
    shutil.copytree(kit, work)
    log, fakes = tmp_path / "calls.log", tmp_path / "fakebin"
    fakes.mkdir()
    venv_python = PY_FAKE_VENV_PYTHON.format(python=REAL_PYTHON, log=str(log))
    fake = fakes / "python"
    fake.write_text(PY_FAKE_PYTHON.format(python=REAL_PYTHON, log=str(log), venv_python=venv_python))
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADER_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=str(fakes), PYTHON=str(fake))  # no bash, no coreutils: Python alone
    run = subprocess.run([REAL_PYTHON, "check.py", "--results", "r.json"], cwd=work, env=env, capture_output=True,
                         text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout + run.stderr
    calls = log.read_text()
    assert "python -m venv .venv" in calls and "venv-python -m pip install --quiet -r requirements.txt" in calls
    data = json.loads((work / "r.json").read_text())
    assert data["extra_data"]["exercise"] == exercise.name and data["extra_data"]["suite"] == "practice"
    assert data["score"] == 0 and "(see INSTRUCTIONS.md)" in run.stdout  # the kit's stub, graded
    assert (work / ".venv" / ".installed").is_file()


@pytest.mark.parametrize("exercise", [DEFAULT], indirect=True)
def test_check_py_with_an_unusable_python_says_so(tmp_path: Path, kit: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADER_", "PYTHON", "VIRTUAL_ENV"))}
    env["PYTHON"] = str(tmp_path / "no-such-python")
    run = subprocess.run([REAL_PYTHON, str(kit / "check.py")], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "cannot be run" in run.stderr and not (kit / ".venv").exists()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize("exercise", [DEFAULT], indirect=True)
def test_committing_the_kit_leaves_out_the_environment_and_results(tmp_path: Path, kit: Path):
    work = tmp_path / "kit"
    shutil.copytree(kit, work)
    for made in (".venv/lib/python3.11/site-packages/jaxlib/big.so", "__pycache__/batchnorm.cpython-311.pyc",
                 "results.json", "junit.xml"):
        (work / made).parent.mkdir(parents=True, exist_ok=True)
        (work / made).write_text("x")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q"], cwd=work, check=True, env=env)
    staged = subprocess.run(["git", "add", "--dry-run", "."], cwd=work, capture_output=True, text=True, check=True,
                            env=env).stdout
    added = {line.removeprefix("add ").strip("'") for line in staged.splitlines()}
    assert {"batchnorm.py", "check.py", "check.sh", ".gitignore", "INSTRUCTIONS.md"} <= added
    assert not [name for name in added if name.startswith((".venv", "__pycache__")) or name in ("results.json", "junit.xml")]


def test_every_grader_command_in_the_kits_texts_grades_the_kits_exercise(tmp_path: Path, kit: Path, exercise: Exercise):
    """A `python -m grader grade ...` line in the kit's texts works as written inside the kit (the NNX
    kit's used to grade the Linen exercise), and check.py names the kit's exercise."""
    assert f'EXERCISE = "{exercise.name}"' in (kit / "check.py").read_text()
    commands = {m.group(0).strip() for name in STUDENT_TEXTS
                for m in re.finditer(r"python -m grader grade [^`\n]*", (kit / name).read_text())}
    if exercise.name != DEFAULT:  # and without the flag a student may forget: the kit knows its exercise
        commands.add("python -m grader grade batchnorm.py")
    work = tmp_path / "kit"
    shutil.copytree(kit, work)
    shutil.copy(exercise.reference, work / "batchnorm.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    for command in commands:
        argv = [REAL_PYTHON, *command.split()[1:], "--quiet", "--results", "r.json"]
        run = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=180,
                             stdin=subprocess.DEVNULL)
        assert run.returncode == 0, (command, run.stderr)
        data = json.loads((work / "r.json").read_text())
        assert data["extra_data"]["exercise"] == exercise.name and data["score"] == data["max_score"], command


@pytest.mark.parametrize("exercise", [DEFAULT], indirect=True)
def test_check_py_grades_a_notebook_named_first(kit: Path, monkeypatch: pytest.MonkeyPatch):
    """`python check.py homework.ipynb` grades the notebook; other arguments still go to the grader."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("kit_check", kit / "check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []
    monkeypatch.setattr(module, "set_up", lambda: True)
    monkeypatch.setattr(module.subprocess, "run", lambda argv, cwd: calls.append(argv) or subprocess.CompletedProcess(argv, 0))
    assert module.main(["homework.ipynb", "--results", "r.json"]) == 0
    assert module.main(["--results", "r.json"]) == 0
    graded = [argv[argv.index("grade") + 1] for argv in calls]
    assert graded == [str(Path("homework.ipynb").resolve()), "batchnorm.py"]
    assert all(argv[-2:] == ["--results", "r.json"] and "--exercise" in argv for argv in calls)
