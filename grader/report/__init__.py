"""Renderers of a :class:`~grader.results.GradeResult`: terminal and results.json."""
