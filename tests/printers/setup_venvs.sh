#!/usr/bin/env bash
# Build the virtualenvs that run real printer software for the `printers` tests.
#
# OctoPrint 1.11.8 and PrusaLink 0.8.1 pin packages that clash with farmsync's own (Flask, pydantic 1), so
# each lives in its own venv under <repo>/.printer-venvs/. Idempotent and fast when nothing changed: a venv
# is rebuilt only when its stamp (Python version + sha256 of its pinned requirements-<name>.txt) differs.
# The Debian packages PrusaLink needs (libcap-dev builds python-prctl, libturbojpeg0 is loaded at start-up)
# are installed only when dpkg says they are missing. Runs unattended (CI: root, no stdin, no tty).
# Missing venvs are built in parallel; each build's pip output goes to .printer-venvs/<name>.build.log.
#
# Usage: bash tests/printers/setup_venvs.sh [octoprint] [prusalink]     (no argument: both)
# Env:   PRINTER_VENV_PYTHON   interpreter for the venvs (default: CPython 3.11)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venvs="$root/.printer-venvs"
apt_packages=(libcap-dev libturbojpeg0)
declare -A modules=([octoprint]=octoprint [prusalink]="prusa.link, prctl, turbojpeg")

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive

log() { echo "setup_venvs: $*" >&2; }

pick_python() {
    if [[ -n "${PRINTER_VENV_PYTHON:-}" ]]; then
        echo "$PRINTER_VENV_PYTHON"
    elif [[ -x /root/.pyenv/versions/3.11.7/bin/python3 ]]; then
        echo /root/.pyenv/versions/3.11.7/bin/python3
    elif command -v python3.11 >/dev/null 2>&1; then
        command -v python3.11
    else
        command -v python3
    fi
}

# What a venv must have been built from: "<python x.y.z> <sha256 of its requirements file>".
wanted_stamp() {
    echo "$py_version $(sha256sum "$here/requirements-$1.txt" | cut -d' ' -f1)"
}

is_current() {
    local stamp="$venvs/$1/.farmsync-stamp"
    [[ -f "$stamp" && -x "$venvs/$1/bin/python" && "$(<"$stamp")" == "$(wanted_stamp "$1")" ]]
}

ensure_apt() {
    local missing=() pkg
    for pkg in "${apt_packages[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { log "need root or sudo to install: ${missing[*]}"; return 1; }
        sudo=(sudo -n)
    fi
    log "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq </dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
}

# Build one venv from scratch; the stamp is written last, so an interrupted build is redone next time.
build_venv() {
    local name=$1 dir="$venvs/$1" started=$SECONDS
    rm -rf "$dir"
    "$python" -m venv "$dir"
    # pip's config here lists local wheel folders that may be absent; their warnings are noise.
    "$dir/bin/python" -m pip install -q --no-input -r "$here/requirements-$name.txt" </dev/null 2>&1 |
        { grep -v "is ignored: it is neither a file nor a directory" || true; }
    "$dir/bin/python" -c "import ${modules[$name]}"
    wanted_stamp "$name" >"$dir/.farmsync-stamp"
    echo "built in $((SECONDS - started)) s"
}

main() {
    local targets=("$@") name
    ((${#targets[@]})) || targets=(octoprint prusalink)
    for name in "${targets[@]}"; do
        [[ $name == octoprint || $name == prusalink ]] || { log "unknown venv '$name' (octoprint|prusalink)"; return 2; }
    done
    python="$(pick_python)"
    py_version="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
    mkdir -p "$venvs"

    # One builder at a time: `make setup` and a pytest fixture may race.
    exec 9>"$venvs/.lock"
    flock 9

    local todo=()
    for name in "${targets[@]}"; do
        if [[ $name == prusalink ]]; then ensure_apt; fi
        is_current "$name" || todo+=("$name")
    done
    ((${#todo[@]} == 0)) && return 0

    local pids=() failed=0 i
    for name in "${todo[@]}"; do
        log "building .printer-venvs/$name (log: .printer-venvs/$name.build.log)"
        build_venv "$name" >"$venvs/$name.build.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!todo[@]}"; do
        if wait "${pids[$i]}"; then
            log "${todo[$i]}: $(tail -n 1 "$venvs/${todo[$i]}.build.log")"
        else
            failed=1
            log "${todo[$i]}: build FAILED; last lines of .printer-venvs/${todo[$i]}.build.log:"
            tail -n 30 "$venvs/${todo[$i]}.build.log" >&2
        fi
    done
    return "$failed"
}

main "$@"
