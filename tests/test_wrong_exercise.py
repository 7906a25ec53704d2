"""A submission of another registered exercise: named from its text (each exercise's markers),
never run for that, so that an NNX module graded as Linen gets a sentence, not a TypeError."""

from __future__ import annotations

import re

from grader.exercises import EXERCISES


def test_a_submission_of_another_exercise_is_named_from_its_text():
    """Each exercise's reference and stub fit it, and no other; graded as the other one, the
    sentence names the exercise it fits. Comments do not count (the markers read code)."""
    from grader.exercises import fits_better
    from grader.grade import wrong_exercise

    for exercise in EXERCISES.values():
        for source in (exercise.reference.read_text(), exercise.stub.read_text()):
            assert fits_better(source, exercise) is None, exercise.name
            for other in EXERCISES.values():
                if other.name != exercise.name:
                    found = fits_better(source, other)
                    assert found is not None and found[0] is exercise, (exercise.name, other.name)
                    reason = wrong_exercise(source.encode(), other)
                    assert reason.startswith(f"this looks like the {exercise.short} exercise (")
                    assert reason.endswith(f"not the {other.short} one: grade with --exercise {exercise.name}")
    linen = EXERCISES["batchnorm_linen"]
    commented = linen.reference.read_text() + "\n# unlike nnx.Module, nnx.BatchStat, nnx.Param, nnx.Rngs, from flax import nnx, nnx.jit, rngs=\n" * 3
    assert fits_better(commented, linen) is None
    assert fits_better("def init_and_apply(seed, x, flag):\n    return x\n", linen) is None  # no marker at all


def test_every_exercise_declares_its_markers():
    for exercise in EXERCISES.values():
        assert exercise.short and exercise.markers, exercise.name
        for marker in exercise.markers:
            re.compile(marker)
