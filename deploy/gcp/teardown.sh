#!/usr/bin/env bash
# Remove what deploy/gcp/deploy.sh made: scheduler jobs, functions, IAM bindings and service accounts.
# Secrets and Firestore data stay unless asked for (DELETE_SECRETS=1, DELETE_DATA=1); the Firestore database
# itself is never deleted (it may hold other data). Missing pieces are skipped, so it is safe to re-run.
#   usage: PROJECT=my-project [REGION=...] [PREFIX=...] deploy/gcp/teardown.sh
#          DRY_RUN=1 ... deploy/gcp/teardown.sh    prints every gcloud command (one per line) instead of running it
set -euo pipefail

PROJECT="${PROJECT:-}"
REGION="${REGION:-europe-west1}"
PREFIX="${PREFIX:-farmsync}"

FIRESTORE_DATABASE="${FIRESTORE_DATABASE:-(default)}"
DELETE_SECRETS="${DELETE_SECRETS:-0}"
DELETE_DATA="${DELETE_DATA:-0}"
DRY_RUN="${DRY_RUN:-0}"

FUNCTIONS="app api webhook backfill-tick filament-tick gcode-tick"
TICKS="backfill-tick filament-tick gcode-tick"
SECRET_NAMES="bambuddy-api-key inventree-token service-api-token webhook-shared-secret"

die() {
  echo "teardown.sh: $*" >&2
  exit 1
}

run() {
  if [ "$DRY_RUN" = 1 ]; then
    local out
    out="$(printf '%q ' "$@")"
    echo "${out% }"
  else
    "$@"
  fi
}

# True when the resource a describe command names exists. In a dry run everything exists, so every delete prints.
present() {
  [ "$DRY_RUN" = 1 ] && return 0
  "$@" >/dev/null 2>&1
}

[ -n "$PROJECT" ] || die "set PROJECT to your Google Cloud project id"
[[ "$PREFIX" =~ ^[a-z][a-z0-9-]{1,19}$ ]] || die "PREFIX must be 2-20 characters of a-z, 0-9 and -, starting with a letter"
if [ "$DRY_RUN" != 1 ] && ! command -v gcloud >/dev/null; then
  die "gcloud is not installed"
fi

RUN_SA="${PREFIX}-run@${PROJECT}.iam.gserviceaccount.com"
SCHEDULER_SA="${PREFIX}-scheduler@${PROJECT}.iam.gserviceaccount.com"

for tick in $TICKS; do
  if present gcloud scheduler jobs describe "${PREFIX}-${tick}" --location="$REGION" --project="$PROJECT"; then
    run gcloud scheduler jobs delete "${PREFIX}-${tick}" --location="$REGION" --project="$PROJECT" --quiet
  fi
done

for fn in $FUNCTIONS; do
  if present gcloud functions describe "${PREFIX}-${fn}" --region="$REGION" --project="$PROJECT"; then
    run gcloud functions delete "${PREFIX}-${fn}" --region="$REGION" --project="$PROJECT" --quiet
  fi
done

if present gcloud iam service-accounts describe "$RUN_SA" --project="$PROJECT"; then
  run gcloud projects remove-iam-policy-binding "$PROJECT" --member="serviceAccount:${RUN_SA}" \
    --role=roles/datastore.user --condition=None --format=none --quiet
fi
for account in "$RUN_SA" "$SCHEDULER_SA"; do
  if present gcloud iam service-accounts describe "$account" --project="$PROJECT"; then
    run gcloud iam service-accounts delete "$account" --project="$PROJECT" --quiet
  fi
done

if [ "$DELETE_SECRETS" = 1 ]; then
  for secret in $SECRET_NAMES; do
    if present gcloud secrets describe "${PREFIX}-${secret}" --project="$PROJECT"; then
      run gcloud secrets delete "${PREFIX}-${secret}" --project="$PROJECT" --quiet
    fi
  done
else
  echo "teardown.sh: secrets ${PREFIX}-* kept (DELETE_SECRETS=1 deletes them)" >&2
fi

if [ "$DELETE_DATA" = 1 ]; then
  # Every synced print's exactly-once mark is in <prefix>_keys: after this, a backfill would sync them again.
  run gcloud firestore bulk-delete "--collection-ids=${PREFIX}_keys,${PREFIX}_cursors,${PREFIX}_values" \
    "--database=$FIRESTORE_DATABASE" "--project=$PROJECT" --quiet
  for group in "${PREFIX}_keys" "${PREFIX}_values"; do
    run gcloud firestore fields ttls update expires_at "--collection-group=$group" --disable-ttl \
      "--database=$FIRESTORE_DATABASE" "--project=$PROJECT" --async --quiet
  done
  if [ "$DRY_RUN" = 1 ]; then
    echo "teardown.sh: would delete every composite index on ${PREFIX}_keys" >&2
  else
    for index in $(gcloud firestore indexes composite list "--database=$FIRESTORE_DATABASE" "--project=$PROJECT" \
      --format='value(name)' --filter="name:/collectionGroups/${PREFIX}_keys/"); do
      run gcloud firestore indexes composite delete "$index" "--database=$FIRESTORE_DATABASE" \
        "--project=$PROJECT" --quiet
    done
  fi
else
  echo "teardown.sh: Firestore collections ${PREFIX}_* kept (DELETE_DATA=1 deletes them and their indexes)" >&2
fi
