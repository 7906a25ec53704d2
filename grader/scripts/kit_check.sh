#!/usr/bin/env bash
# Practice check for the student kit (shipped as check.sh): set up .venv once with
# the first Python 3.11 or newer it finds, then grade batchnorm.py on the public
# practice suite. Extra arguments go to the grader (e.g. --results r.json).
#
#     ./check.sh
#     PYTHON=/path/to/python3.12 ./check.sh      # choose the interpreter yourself
#
# Only shell built-ins and Python are used, so it runs wherever bash and Python do.
set -euo pipefail
case "$0" in */*) cd "${0%/*}" ;; esac

CANDIDATES="python3.11 python3.12 python3.13 python3 python"
NEEDED="Python 3.11 or newer (3.11, 3.12 and 3.13 are known to work with the pinned versions)"
# Prints the interpreter's version; succeeds only for 3.11 and newer.
PROBE='import sys; print("%d.%d.%d" % sys.version_info[:3]); sys.exit(0 if sys.version_info >= (3, 11) else 1)'

choose_python() {
    local candidate path version="" seen=""
    if [ -n "${PYTHON:-}" ]; then
        if version=$("$PYTHON" -c "$PROBE" 2>/dev/null); then
            CHOSEN="$PYTHON" CHOSEN_VERSION="$version"
            return 0
        fi
        echo "check.sh: PYTHON=$PYTHON is not $NEEDED${version:+ (it is $version)}." >&2
        return 1
    fi
    for candidate in $CANDIDATES; do
        path=$(command -v "$candidate" 2>/dev/null) || continue
        version=""
        if version=$("$path" -c "$PROBE" 2>/dev/null); then
            CHOSEN="$path" CHOSEN_VERSION="$version"
            return 0
        fi
        seen="$seen $candidate${version:+ ($version)}"
    done
    {
        echo "check.sh: this kit needs $NEEDED, and none was found."
        echo "  looked for: $CANDIDATES"
        if [ -n "$seen" ]; then echo "  too old or not working:$seen"; fi
        echo "  Install one from https://www.python.org/downloads/ (or: sudo apt install python3.11 python3.11-venv;"
        echo "  brew install python@3.11; conda create -n bn python=3.11), then run ./check.sh again,"
        echo "  or name it yourself: PYTHON=/path/to/python3.11 ./check.sh"
    } >&2
    return 1
}

if [ ! -x .venv/bin/python ] || [ ! -e .venv/.installed ]; then
    CHOSEN="" CHOSEN_VERSION=""
    choose_python || exit 2
    echo "check.sh: setting up .venv with $CHOSEN (Python $CHOSEN_VERSION); the first run installs the pinned packages"
    "$CHOSEN" -c 'import shutil; shutil.rmtree(".venv", ignore_errors=True)'  # a half-made one
    if ! "$CHOSEN" -m venv .venv; then
        "$CHOSEN" -c 'import shutil; shutil.rmtree(".venv", ignore_errors=True)'
        echo "check.sh: $CHOSEN could not create a virtual environment (on Debian or Ubuntu: sudo apt install python${CHOSEN_VERSION%.*}-venv)." >&2
        exit 2
    fi
    if ! .venv/bin/python -m pip install --quiet -r requirements.txt; then
        echo "check.sh: installing the pinned packages (requirements.txt) with Python $CHOSEN_VERSION failed; see pip's message above." >&2
        echo "  If pip found no matching version, use Python 3.11 or 3.12: PYTHON=/path/to/python3.11 ./check.sh" >&2
        exit 2
    fi
    : > .venv/.installed
fi
exec .venv/bin/python -m grader grade batchnorm.py --isolation process "$@"
