# Two commands set everything up on a fresh machine: `make grade` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUBMISSION ?=

.PHONY: grade test bench mutants shard-scale clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# constraints.txt pins every transitive dependency too (pip freeze of a known-good set).
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@# Bytecode for our own modules: grading starts faster even where
	@# PYTHONDONTWRITEBYTECODE is set (workers get a copy of it too).
	$(PY) -m compileall -q grader solution exercise
	@touch $(STAMP)

grade: $(STAMP)
ifeq ($(strip $(SUBMISSION)),)
	$(PY) -m grader examples examples/
else
	$(PY) -m grader grade $(SUBMISSION)
endif

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/bench.py

# A class of 2,000 generated submissions graded whole and as 4 shards (two at a time),
# merged and compared with the whole; about an hour on 2 free cores (SIZE=... for less).
SIZE ?= 2000
shard-scale: $(STAMP)
	$(PY) bench/shard_scale.py --size $(SIZE)

# Every mutant of the reference: classified by behaviour, graded, report in build/.
mutants: $(STAMP)
	$(PY) bench/mutants.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

# Gradescope's setup.sh and run_autograder in a fresh Debian root with no Python, under
# 768 MiB and half a CPU, results checked against Gradescope's spec. Needs root and
# network (Debian's archive, PyPI); the root is built once into build/ (debootstrap).
.PHONY: gradescope-test
gradescope-test: $(STAMP)
	@command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
	$(PY) -m pytest -m platform -rP tests/test_gradescope_setup.py
