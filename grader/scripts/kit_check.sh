#!/usr/bin/env bash
# Practice check for the student kit (shipped as check.sh): finds the first Python 3.11
# or newer and runs check.py with it, which sets up .venv once and grades batchnorm.py on
# the public practice suite. Extra arguments go to the grader (e.g. --results r.json).
# Without bash (Windows): python check.py does the same.
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

if [ -x .venv/bin/python ] && [ -e .venv/.installed ]; then
    exec .venv/bin/python check.py "$@"
fi
CHOSEN="" CHOSEN_VERSION=""
choose_python || exit 2
# check.py does the rest (it runs without bash too: python check.py): .venv made with the
# interpreter chosen here, then the grading.
export PYTHON="$CHOSEN"
exec "$CHOSEN" check.py "$@"
