#!/usr/bin/env bash
# Build .bench-venvs/link-sync: link-sync 0.2.5 for bench/gcode_sync.py, apart from farmsync's own venv.
#
# Idempotent: does nothing when the venv's stamp (Python version + sha256 of bench/requirements-link-sync.txt)
# matches; otherwise the venv is rebuilt from scratch and the stamp written last, so an interrupted build is redone.
# Runs unattended (no stdin, no tty). Env: BENCH_VENV_PYTHON, the interpreter for the venv (default: python3.11).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$root/.bench-venvs/link-sync"
requirements="$here/requirements-link-sync.txt"

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

pick_python() {
    if [[ -n "${BENCH_VENV_PYTHON:-}" ]]; then
        echo "$BENCH_VENV_PYTHON"
    elif command -v python3.11 >/dev/null 2>&1; then
        command -v python3.11
    else
        command -v python3
    fi
}

python="$(pick_python)"
wanted="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') $(sha256sum "$requirements" | cut -d' ' -f1)"
stamp="$venv/.farmsync-stamp"
current() { [[ -f "$stamp" && -x "$venv/bin/link-sync" && "$(<"$stamp")" == "$wanted" ]]; }
current && exit 0

mkdir -p "$root/.bench-venvs"
exec 9>"$root/.bench-venvs/.lock"
flock 9  # one builder at a time; whoever waited finds the venv built
current && exit 0
echo "setup_linksync: building .bench-venvs/link-sync" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
# pip's config here may list local wheel folders that are absent; their warnings are noise.
"$venv/bin/python" -m pip install -q --no-input -r "$requirements" </dev/null 2>&1 |
    { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$venv/bin/link-sync" --help >/dev/null
echo "$wanted" >"$stamp"
echo "setup_linksync: done" >&2
