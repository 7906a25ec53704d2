"""Auto-grader for the BatchNorm-with-batch_stats exercise.

The grading process never imports a submission: it runs it in worker processes
(:mod:`grader.sandbox`), compares what comes back with an independent NumPy model
(:mod:`grader.oracle`) under float32-aware tolerances (:mod:`grader.compare`),
and turns the declared checks (:mod:`grader.checks`) into a score and messages.
"""

__version__ = "0.1.0"
