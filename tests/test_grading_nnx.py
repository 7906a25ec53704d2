"""The NNX exercise graded end to end, like the Linen one: right code scores 100,
each wrong submission gets exactly its tag and costs the one check that owns it."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.exercises import get
from tests.conftest import ROOT, TEST_SECRET, declared_pitfalls, run_cli

pytestmark = pytest.mark.slow
NNX = ROOT / "tests" / "submissions_nnx"
WRONG_NNX = sorted((NNX / "wrong").glob("*.py"))
# Found by red-teaming the grader: wrong in ways with no tag; each header says the
# score it must get and the one check it must lose ("# expect: 85, flow").
REDTEAM_NNX = sorted((NNX / "redteam").glob("*.py"))


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every NNX submission, the reference and the stub, in one batch run."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("nnx-class")
    for path in [*WRONG_NNX, *REDTEAM_NNX, *sorted((NNX / "correct").glob("*.py"))]:
        shutil.copy(path, folder / f"{path.parent.name}-{path.name}")
    shutil.copy(ROOT / "solution" / "nnx" / "batchnorm.py", folder / "reference.py")
    shutil.copy(ROOT / "exercise" / "nnx" / "batchnorm.py", folder / "stub.py")
    out = tmp_path_factory.mktemp("nnx-out")
    run = run_cli("batch", str(folder), "--out", str(out), "--jobs", "2", "--exercise", "batchnorm_nnx",
                  env={"GRADER_SECRET": TEST_SECRET}, timeout=900)
    assert run.code == 0, run.stderr
    assert "internal error" not in run.stderr, run.stderr  # no check may fail to judge a submission
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("students/*/results.json")}


def test_reference_and_correct_submissions_score_100_and_the_stub_0(graded):
    for sid, data in graded.items():
        if sid == "reference" or sid.startswith("correct-"):
            assert data["score"] == 100, (sid, [t["output"][:200] for t in data["tests"] if t["status"] != "passed"])
            assert data["extra_data"]["exercise"] == "batchnorm_nnx"
    assert graded["stub"]["score"] == 0


@pytest.mark.parametrize("path", WRONG_NNX, ids=lambda p: p.stem)
def test_wrong_nnx_submission_is_named_exactly_and_charged_once(path: Path, graded):
    data = graded[f"wrong-{path.stem}"]
    tags = declared_pitfalls(path)
    assert set(tags) <= set(get("batchnorm_nnx").pitfalls)
    assert sorted(data["extra_data"]["tags"]) == sorted(tags), [t["output"][:300] for t in data["tests"]
                                                                if t["status"] != "passed"]
    charged = [t["name"] for t in data["tests"] if t["max_score"] > 0 and t["score"] < t["max_score"]]
    assert len(charged) == 1, charged


@pytest.mark.parametrize("path", REDTEAM_NNX, ids=lambda p: p.stem)
def test_red_team_submission_gets_its_score_and_loses_its_one_check(path: Path, graded):
    score, check = path.read_text().splitlines()[0].removeprefix("# expect: ").split(", ")
    data = graded[f"redteam-{path.stem}"]
    charged = [t["name"] for t in data["tests"] if t["max_score"] > 0 and t["score"] < t["max_score"]]
    names = {c.id: c.name for c in get("batchnorm_nnx").checks}
    assert data["score"] == float(score), [t["output"][:300] for t in data["tests"] if t["status"] != "passed"]
    assert names[check] in charged


def test_each_nnx_message_says_what_that_code_did(graded):
    """The jit trap in each of its forms, the mode after construction, keepdims writes."""
    def text(sid: str) -> str:
        return "\n".join(t["output"] for t in graded[sid]["tests"])

    for silent in ("wrong-jax_jit_model_argument", "wrong-split_new_state_dropped"):
        assert "still holds the running statistics it was constructed with" in text(silent)
        assert "nnx.update(model, state)" in text(silent)  # the hint shows the correct forms
    assert "TraceContextError" in text("wrong-jax_jit_on_state")
    assert "as in eval mode" in text("wrong-built_in_eval_mode")
    assert graded["wrong-keepdims_written_in_place"]["score"] == 87
    assert "[...] =" in text("wrong-keepdims_written_in_place")
