#!/usr/bin/env bash
# Stage the source that Cloud Functions builds: main.py (functions/main.py), the library as the package folder
# farmsync/ beside it, and requirements.txt, which the Python buildpack installs. Nothing else is uploaded.
#   usage: deploy/gcp/stage.sh [OUT_DIR]          (default: build/gcp in the repository)
# OUT_DIR is replaced on every run, but only if it is empty or was made by this script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/build/gcp}"
MARKER=".farmsync-stage"

if [ -e "$OUT" ]; then
  if [ ! -d "$OUT" ] || { [ ! -f "$OUT/$MARKER" ] && [ -n "$(ls -A "$OUT")" ]; }; then
    echo "stage.sh: $OUT exists and was not made by stage.sh; refusing to replace it" >&2
    exit 1
  fi
  rm -rf "$OUT"
fi

mkdir -p "$OUT"
cp "$ROOT/functions/main.py" "$OUT/main.py"
cp "$ROOT/requirements.txt" "$OUT/requirements.txt"
cp -R "$ROOT/shared/farmsync" "$OUT/farmsync"
find "$OUT" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
printf '%s\n' "# what gcloud does not upload from this folder" '__pycache__/' '*.pyc' "$MARKER" >"$OUT/.gcloudignore"
: >"$OUT/$MARKER"
echo "stage.sh: staged main.py, farmsync/ and requirements.txt in $OUT" >&2
