#!/usr/bin/env bash
# mvc end to end on a model this script makes itself: commit, change, commit, diff, tag,
# check out an older version, deploy a canary and roll it back, push to a remote and clone
# it. Runs in a fresh temporary folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/mvc-quickstart.XXXXXX")"
cd "$work"
echo "== working in $work"
run() { echo; echo "\$ $*"; "$@"; }

run mvc init
run mvc config set user.name "Quickstart Example"
python "$here/make_model.py" models/tiny-bert --seed 1
run mvc commit models/tiny-bert -m "baseline" --param lr=3e-5 --metric accuracy=0.871
run mvc tag tiny-bert v1.0.0
run mvc status

# "Retrain": half of the tensors change a little.
python "$here/make_model.py" models/tiny-bert --finetune-of models/tiny-bert --seed 2
run mvc status
run mvc commit models/tiny-bert -m "retrained on v2 data" --param lr=2e-5 --metric accuracy=0.913
run mvc diff tiny-bert@v1.0.0 tiny-bert@main --no-stats
run mvc tag tiny-bert --bump auto --explain          # weights changed, interface intact: minor
run mvc log tiny-bert
run mvc show tiny-bert@main~1
run mvc ls tiny-bert@v1.1.0 -l
run mvc cat tiny-bert@v1.0.0 config.json

# Restore the older version into the working folder, then materialise the newer one elsewhere.
run mvc checkout tiny-bert@v1.0.0
run mvc checkout tiny-bert@main --to exported/tiny-bert
b3_store=$(mvc show tiny-bert@main --json | python -c 'import json,sys; print([f["blake3"] for f in json.load(sys.stdin)["files"] if f["path"]=="model.safetensors"][0])')
b3_disk=$(python -c 'import blake3,sys; print(blake3.blake3(open(sys.argv[1],"rb").read()).hexdigest())' exported/tiny-bert/model.safetensors)
[ "$b3_store" = "$b3_disk" ] && echo "blake3 of the checked-out file matches the version: $b3_disk"

# Ship it: v1.0.0 serves prod, v1.1.0 goes out as a 10% canary, then is rolled back.
run mvc channel set tiny-bert prod v1.0.0 -m "first release"
run mvc deploy tiny-bert prod v1.1.0 --canary 10
run mvc route tiny-bert prod --key user-42
run mvc rollback tiny-bert prod -m "p99 latency regressed"
run mvc channel history tiny-bert prod
run mvc export tiny-bert prod --format kserve --to exported/kserve

# Share it: push to a remote (any fsspec URL; a folder here) and clone it back.
run mvc remote add origin "file://$work/remote"
run mvc push origin tiny-bert
run mvc clone "$work/remote" "$work/clone" --model tiny-bert
run mvc -C "$work/clone" log tiny-bert@prod

run mvc models
run mvc gc
run mvc fsck
echo
echo "== done: the store is in $work/.mvc"
