#!/usr/bin/env bash
# Sets up plend in a virtual environment in .venv (safe to run again).
#
#   ./install.sh          the daemon, plus the simulator on a PC
#   ./install.sh --dev    also the test and lint tools
#
# Environment: PYTHON picks the interpreter (default python3, 3.11 or newer).
set -euo pipefail

cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=.venv
dev=0

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
}

for arg in "$@"; do
    case "$arg" in
        --dev) dev=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: error: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "install.sh: error: $PYTHON not found; install Python 3.11 or newer (apt-get install python3 python3-venv)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "install.sh: error: $("$PYTHON" --version 2>&1) is too old; plend needs Python 3.11 or newer" >&2
    exit 1
fi

on_pi=0
if grep -qs 'Raspberry Pi' /proc/device-tree/model; then
    on_pi=1
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
else
    say "using existing virtual environment in $VENV"
fi

extras=()
if [ "$on_pi" -eq 0 ]; then
    # pybullet has no wheels for the Pi: the simulator is for development machines.
    extras+=(sim)
fi
if [ "$dev" -eq 1 ]; then
    extras+=(sim test lint)
fi

spec="."
if [ "${#extras[@]}" -gt 0 ]; then
    joined=$(printf '%s\n' "${extras[@]}" | sort -u | paste -sd, -)
    spec=".[$joined]"
fi

say "installing plend ($spec)"
"$VENV/bin/python" -m pip install --quiet -e "$spec"

say "done: $("$VENV/bin/plend" --version)"
if [ "$on_pi" -eq 0 ]; then
    say "try: $VENV/bin/plend run --hal sim --fast --gait sine --speed 0.5 --duration 20 --summary json"
fi
