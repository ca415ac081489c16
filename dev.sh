#!/usr/bin/env bash
# One entry point for a fresh machine: creates (or reuses) ./.venv, installs atrous with the
# extras the task needs, then runs it.
#   ./dev.sh demo   set up and run the end-to-end demo
#   ./dev.sh test   set up and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
task="${1:-}"
shift || true

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi

install() {
    # Re-install only when pyproject.toml changed since the last install into this .venv.
    local stamp=".venv/.atrous-$1"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$1]"
        touch "$stamp"
    fi
}

case "$task" in
    demo)
        install demo
        exec .venv/bin/python -m atrous.demo "$@"
        ;;
    test)
        install dev
        exec .venv/bin/python -m pytest -q "$@"
        ;;
    *)
        echo "usage: ./dev.sh demo|test [args...]" >&2
        exit 2
        ;;
esac
