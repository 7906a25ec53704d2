#!/usr/bin/env bash
# Gradescope runs this once when building the autograder image.
set -euo pipefail
if ! command -v python3.11 >/dev/null; then
    apt-get update
    apt-get install -y python3.11 python3.11-venv
fi
python3.11 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --quiet -r /autograder/source/requirements.txt
