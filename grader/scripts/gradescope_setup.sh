#!/usr/bin/env bash
# Gradescope runs this once, as root and with network access, when it builds the
# autograder image. It leaves a virtualenv at $ROOT/venv (ROOT=/autograder unless
# AUTOGRADER_ROOT says otherwise, for tests) with the pinned dependencies.
#
# The pins need a final release of Python 3.11 to 3.13. In order of preference:
#   1. an interpreter already on PATH (python3.13, python3.12, python3.11, python3),
#      whose venv/ensurepip works (on apt systems its pythonX.Y-venv is installed
#      when missing);
#   2. on apt systems, the distribution's own python3.X when it is a final release
#      (Debian 12/13, Ubuntu 24.04) - never a release candidate such as Ubuntu
#      22.04's python3.11 3.11.0~rc1;
#   3. a standalone CPython build installed by uv (python-build-standalone), uv
#      itself taken from PyPI (a pinned wheel, checked by its sha256) or, without
#      any Python to unpack it, from astral's installer for the pinned version.
# Every decision is logged as one "setup.sh: ..." line; if nothing works, the
# last line says why and what to change.
set -euo pipefail

ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
VENV="$ROOT/venv"
UV_HOME="$ROOT/uv"

MIN_MINOR=11   # Python 3.11 ... 3.13: the versions the pins have wheels for and are tested on
MAX_MINOR=13
UV_VERSION="0.13.9"
UV_PYTHON="3.11.18"   # the standalone CPython uv installs when the image has no usable Python
# uv's static (musl) binary from PyPI, per machine: URL and sha256 of the wheel.
UV_WHEEL_x86_64="https://files.pythonhosted.org/packages/fe/fe/794884de0efd3ac77a427cab21aa72c0483e100c55a42cd5cbb02c141b84/uv-0.13.9-py3-none-musllinux_1_1_x86_64.whl"
UV_WHEEL_SHA256_x86_64="2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25"
UV_WHEEL_aarch64="https://files.pythonhosted.org/packages/57/15/94b6cd62ac3ff6550288328e8035288875197cbc183f51554b266a69877b/uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl"
UV_WHEEL_SHA256_aarch64="5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe"
UV_INSTALLER="https://astral.sh/uv/$UV_VERSION/install.sh"

export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1

log() { printf 'setup.sh: %s\n' "$*"; }
WHY=()  # one reason per rejected option, repeated in the final error
reject() { WHY+=("$*"); log "$*"; }
die() {
    printf 'setup.sh: ERROR: %s\n' "$*" >&2
    for reason in "${WHY[@]}"; do printf 'setup.sh:   - %s\n' "$reason" >&2; done
    exit 1
}

# "3.12.3 final" for an interpreter that runs, nothing otherwise.
version_of() {
    "$1" -c 'import sys; v = sys.version_info; print("%d.%d.%d %s" % (v[0], v[1], v[2], v[3]))' 2>/dev/null | head -n 1
}

# Whether "X.Y.Z level" is a final release the pins support.
supported() {
    local number="${1% *}" level="${1#* }" major minor
    major="${number%%.*}"; minor="${number#*.}"; minor="${minor%%.*}"
    [ "$level" = final ] && [ "$major" = 3 ] && [ "$minor" -ge "$MIN_MINOR" ] && [ "$minor" -le "$MAX_MINOR" ]
}

# Create $VENV with $1 and check that its pip runs; on failure leave no venv
# behind and put the interpreter's last complaint in VENV_ERROR.
VENV_ERROR=""
make_venv() {
    local out
    rm -rf "$VENV"
    if out=$("$1" -m venv "$VENV" 2>&1) && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    case "$out" in
        *ensurepip*) VENV_ERROR="ensurepip is not available" ;;
        *) VENV_ERROR=$(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1) ;;
    esac
    VENV_ERROR="${VENV_ERROR:-its venv has no working pip}"
    rm -rf "$VENV"
    return 1
}

have_apt() { command -v apt-get >/dev/null 2>&1 && command -v apt-cache >/dev/null 2>&1; }
APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" = 1 ] && return 0
    log "apt-get update"
    apt-get update -qq >/dev/null || { log "apt-get update failed"; return 1; }
    APT_UPDATED=1
}
apt_install() {
    apt_update || return 1
    log "apt-get install $*"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# apt's candidate version of a package ("" when it has none).
apt_candidate() {
    local version
    version=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | head -n 1)
    [ "$version" = "(none)" ] && version=""
    printf '%s' "$version"
}
# Whether a Debian version such as 3.11.2-6+deb12u1 is a final upstream release
# (3.11.0~rc1-1~22.04 is not).
apt_final() {
    local upstream="${1#*:}"
    upstream="${upstream%-*}"
    [[ "$upstream" =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]]
}

# Try one interpreter: supported version, then a working venv (installing the
# distribution's venv package with apt when that is what is missing).
SEEN=" "
try_interpreter() {
    local py="$1" real version minor
    real=$(readlink -f "$py" 2>/dev/null || printf '%s' "$py")
    case "$SEEN" in *" $real "*) return 1 ;; esac
    SEEN="$SEEN$real "
    version=$(version_of "$py")
    if [ -z "$version" ]; then
        reject "skipping $py: it does not run"
        return 1
    fi
    if ! supported "$version"; then
        reject "skipping $py ($version): need a final release of Python 3.$MIN_MINOR to 3.$MAX_MINOR"
        return 1
    fi
    if make_venv "$py"; then
        log "using $py (${version% final}) for $VENV"
        return 0
    fi
    minor="${version#*.}"; minor="${minor%%.*}"
    if have_apt; then
        log "$py (${version% final}) cannot make a venv ($VENV_ERROR): installing python3.$minor-venv"
        if apt_install "python3.$minor-venv" && make_venv "$py"; then
            log "using $py (${version% final}) for $VENV"
            return 0
        fi
    fi
    reject "skipping $py (${version% final}): cannot make a venv ($VENV_ERROR)"
    return 1
}

existing_interpreters() {
    local name
    for name in python3.13 python3.12 python3.11 python3; do
        if command -v "$name" >/dev/null 2>&1; then
            try_interpreter "$(command -v "$name")" && return 0
        fi
    done
    return 1
}

apt_interpreters() {
    local minor version
    have_apt || { reject "no apt-get here: cannot install a distribution Python"; return 1; }
    apt_update || { reject "apt-get update failed"; return 1; }
    for minor in $(seq "$MAX_MINOR" -1 "$MIN_MINOR"); do
        version=$(apt_candidate "python3.$minor")
        if [ -z "$version" ]; then
            continue
        fi
        if ! apt_final "$version"; then
            reject "not using apt's python3.$minor $version: not a final release"
            continue
        fi
        log "installing apt's python3.$minor $version"
        if apt_install "python3.$minor" "python3.$minor-venv" || apt_install "python3.$minor"; then
            if command -v "python3.$minor" >/dev/null 2>&1 && try_interpreter "$(command -v "python3.$minor")"; then
                return 0
            fi
        else
            reject "apt-get could not install python3.$minor"
        fi
    done
    reject "apt offers no final Python 3.$MIN_MINOR to 3.$MAX_MINOR"
    return 1
}

# Any Python at all (even too old for the pins) can fetch and unpack uv's wheel.
any_python() {
    local name
    for name in python3 python3.13 python3.12 python3.11 python3.10 python3.9 python3.8 python; do
        if command -v "$name" >/dev/null 2>&1 && "$name" -c 'import hashlib, ssl, urllib.request, zipfile' >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

uv_works() { [ -x "$1" ] && [ "$("$1" --version 2>/dev/null | cut -d' ' -f2)" = "$UV_VERSION" ]; }

install_uv() {
    local uv="$UV_HOME/bin/uv" arch url sha py fetcher installer
    uv_works "$uv" && return 0
    mkdir -p "$UV_HOME/bin"
    arch=$(uname -m)
    url=""; sha=""
    case "$arch" in
        x86_64) url="$UV_WHEEL_x86_64"; sha="$UV_WHEEL_SHA256_x86_64" ;;
        aarch64) url="$UV_WHEEL_aarch64"; sha="$UV_WHEEL_SHA256_aarch64" ;;
    esac
    if [ -n "$url" ] && py=$(any_python); then
        log "fetching uv $UV_VERSION from PyPI (wheel checked by sha256) with $py"
        if "$py" - "$url" "$sha" "$uv" <<'EOF'
import hashlib, io, os, sys, urllib.request, zipfile
url, sha, out = sys.argv[1:4]
data = urllib.request.urlopen(url, timeout=120).read()
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit("uv wheel: sha256 mismatch")
with zipfile.ZipFile(io.BytesIO(data)) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".data/scripts/uv"))
    with open(out + ".part", "wb") as handle:
        handle.write(wheel.read(name))
os.chmod(out + ".part", 0o755)
os.replace(out + ".part", out)
EOF
        then
            uv_works "$uv" && return 0
        fi
        log "uv from PyPI did not work"
    fi
    installer="$UV_HOME/install.sh"
    if command -v curl >/dev/null 2>&1; then
        fetcher="curl"
        curl -LsSf --retry 3 -o "$installer" "$UV_INSTALLER" || fetcher=""
    elif command -v wget >/dev/null 2>&1; then
        fetcher="wget"
        wget -q -O "$installer" "$UV_INSTALLER" || fetcher=""
    else
        reject "no Python, curl or wget to fetch uv with"
        return 1
    fi
    if [ -z "$fetcher" ]; then
        reject "could not download $UV_INSTALLER"
        return 1
    fi
    log "installing uv $UV_VERSION with astral's installer ($fetcher)"
    UV_UNMANAGED_INSTALL="$UV_HOME/bin" sh "$installer" >/dev/null || true
    rm -f "$installer"
    uv_works "$uv" && return 0
    reject "astral's installer did not leave uv $UV_VERSION in $UV_HOME/bin"
    return 1
}

uv_interpreter() {
    local uv="$UV_HOME/bin/uv" py
    install_uv || return 1
    export UV_PYTHON_INSTALL_DIR="$UV_HOME/python" UV_CACHE_DIR="$UV_HOME/cache" UV_NO_CONFIG=1
    log "installing a standalone CPython $UV_PYTHON with uv $UV_VERSION"
    if ! "$uv" python install --no-bin "$UV_PYTHON"; then
        reject "uv could not install CPython $UV_PYTHON"
        return 1
    fi
    rm -rf "$UV_CACHE_DIR"
    if ! py=$("$uv" python find --managed-python "$UV_PYTHON" 2>/dev/null) || [ -z "$py" ]; then
        reject "uv installed CPython $UV_PYTHON but cannot find it"
        return 1
    fi
    try_interpreter "$py"
}

existing_interpreters || apt_interpreters || uv_interpreter \
    || die "no Python 3.$MIN_MINOR to 3.$MAX_MINOR with a working venv could be set up. Use a base image with one (Ubuntu 24.04 has python3.12), or let this script reach PyPI and astral.sh/github.com. What was tried:"

log "installing the pinned dependencies into $VENV"
"$VENV/bin/python" -m pip install --quiet --progress-bar off -r "$SOURCE/requirements.txt" \
    || die "pip could not install $SOURCE/requirements.txt into $VENV"
"$VENV/bin/python" -m compileall -q "$SOURCE/grader" >/dev/null || true
summary=$("$VENV/bin/python" -c 'import sys, jax, flax, numpy; print("Python %d.%d.%d, jax %s, flax %s, numpy %s" % (sys.version_info[:3] + (jax.__version__, flax.__version__, numpy.__version__)))') \
    || die "the pinned dependencies do not import in $VENV"
log "ready: $VENV ($summary)"
