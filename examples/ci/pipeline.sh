#!/usr/bin/env bash
# The model pipeline both CI examples run (github-actions.yml, gitlab-ci.yml): train, commit with
# metrics, tag the next version from the evidence, push, start a canary, and let the SLO guard
# judge it. Only documented exit codes (docs/exit-codes.md) and --json output are relied on.
#
#   MODEL=tiny-bert REMOTE_URL=s3://bucket/mvc CHANNEL=prod CANARY=10 bash examples/ci/pipeline.sh
#
# Needs: mvc installed; REMOTE_URL reachable (a folder works too). Set SEED to vary the run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
MODEL="${MODEL:-tiny-bert}"
CHANNEL="${CHANNEL:-prod}"
CANARY="${CANARY:-10}"
SEED="${SEED:-$RANDOM}"
: "${REMOTE_URL:?set REMOTE_URL to the mvc remote of the team: s3://..., gs://..., or a folder}"
json() { python -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# A CI runner starts empty: make (or reuse) a store, and point it at the team's remote.
[ -d .mvc ] || mvc init
mvc config set user.name "${CI_AUTHOR:-ci}"
mvc remote list --json | python -c "import json,sys; sys.exit(0 if any(r['name'] == 'origin' for r in json.load(sys.stdin)) else 1)" \
    || mvc remote add origin "$REMOTE_URL"
# The model's history from the remote, so the new version's parent, the bump level and the
# channel are the team's, not this runner's. A first run (the remote has no such model yet)
# starts the history; anything else going wrong shows up at push (exit 11, not fast-forward).
if mvc pull origin "$MODEL" --json > /dev/null 2>&1; then
    mvc checkout "$MODEL" --to "models/$MODEL" --bind --force > /dev/null
fi

python "$here/train.py" "models/$MODEL" metrics.json --seed "$SEED"
version=$(mvc commit "models/$MODEL" -m "CI training run ${CI_RUN:-local} (seed $SEED)" \
    --metrics metrics.json --json | json "['version']")
echo "committed $MODEL@$version"
if [ "$version" = "None" ]; then
    echo "nothing changed; no new version"
    exit 0
fi

# The first release is named by hand (v1.0.0); after that the evidence (weights, config,
# interface) decides the level.
if [ "$(mvc tag "$MODEL" --json | json "")" = "[]" ]; then
    tag=v1.0.0
    mvc tag "$MODEL" "$tag" -m "first release" --json > /dev/null
else
    tag=$(mvc tag "$MODEL" --bump auto --json | json "['tag']")
fi
echo "tagged $tag"
mvc push origin "$MODEL"

if ! mvc channel show "$MODEL" "$CHANNEL" --json >/dev/null 2>&1; then
    mvc channel set "$MODEL" "$CHANNEL" "$tag" -m "CI: first release $tag" --json >/dev/null
    mvc push origin "$MODEL"
    echo "released $tag on $CHANNEL"
    exit 0
fi
mvc deploy "$MODEL" "$CHANNEL" "$tag" --canary "$CANARY" -m "CI: canary $tag" --json >/dev/null
mvc push origin "$MODEL"

# The guard judges the canary against the SLOs of mvc.yaml (examples/ci/mvc.yaml); schedule the
# same step every few minutes (the example files do) so it advances 10 -> 25 -> 50 -> promote
# as traffic accumulates.
set +e
mvc guard "$MODEL" "$CHANNEL" --advance --json > guard.json
status=$?
set -e
case $status in
    0) echo "guard: healthy (advanced where a step was due)"; mvc push origin "$MODEL" ;;
    21) echo "guard: not enough traffic yet; the scheduled job will judge it later" ;;
    20) echo "guard: the canary broke an SLO and was rolled back"; mvc push origin "$MODEL"; exit 20 ;;
    *) echo "guard failed with exit $status"; exit "$status" ;;
esac
