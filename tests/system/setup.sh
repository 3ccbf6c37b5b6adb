#!/usr/bin/env bash
# Install the Debian packages the test suite needs (tests/system/debian-packages.txt), only those missing.
#
# Why a script and not a line in .ci/run: `make test` on a fresh machine must do all the set-up itself. It
# prints what it installs and fails loudly, naming the command to run, when it cannot install (not root and no
# passwordless sudo, or apt cannot reach its mirror). The Firestore emulator is not in Debian's own archive: it
# comes with the Google Cloud CLI (package google-cloud-cli-firestore-emulator), which this machine image ships;
# when it is absent the script says so and stops.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
list="$here/debian-packages.txt"

has() {
    command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/sbin/$1" ]]
}

missing=()
while read -r cmd pkg _; do
    [[ -z "$cmd" || "$cmd" == \#* ]] && continue
    has "$cmd" || missing+=("$pkg")
done <"$list"
# Several commands can come from one package (chromium-driver needs chromium): install each name once.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk 'NF && !seen[$0]++')

emulator_ok() {
    local root
    for root in "${CLOUDSDK_ROOT:-}" /usr/lib/google-cloud-sdk /usr/share/google-cloud-sdk; do
        [[ -n "$root" && -x "$root/platform/cloud-firestore-emulator/cloud_firestore_emulator" ]] && return 0
    done
    has gcloud
}

if ((${#missing[@]})); then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "setup: missing Debian packages: ${missing[*]}" >&2
            echo "setup: install them as root:  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
            exit 1
        fi
    fi
    echo "setup: installing Debian packages: ${missing[*]} (first run only, about 1-2 minutes)"
    started=$SECONDS
    export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
    "${sudo[@]}" apt-get update -qq </dev/null
    # -qq keeps apt to errors; the summary line below says what happened.
    if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/tmp/farmsync-apt.log 2>&1; then
        tail -n 20 /tmp/farmsync-apt.log >&2
        echo "setup: apt-get install failed (log above; full log /tmp/farmsync-apt.log)" >&2
        exit 1
    fi
    echo "setup: Debian packages installed in $((SECONDS - started)) s"
fi

# Check again: a package that installed but did not bring its command is a failure, not a skip.
while read -r cmd pkg _; do
    [[ -z "$cmd" || "$cmd" == \#* ]] && continue
    has "$cmd" || { echo "setup: '$cmd' is still missing after installing $pkg" >&2; exit 1; }
done <"$list"

if ! emulator_ok; then
    echo "setup: the Firestore emulator is missing: install the package google-cloud-cli-firestore-emulator" >&2
    echo "setup: (from the Google Cloud CLI apt repository; see README, Development)" >&2
    exit 1
fi
