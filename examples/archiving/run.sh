#!/usr/bin/env bash
# Archiving end to end: three versions, a release tag and a channel, a cold remote (a folder
# here; S3 with storage_class=GLACIER_IR in real life), the example policy with its 90 days
# shortened to 0s so something is idle now, then plan, apply, a refused checkout, restore and
# the audit log. Runs in a fresh temporary folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/mvc-archiving.XXXXXX")"
cd "$work"
echo "== working in $work"
run() { echo; echo "\$ $*"; "$@"; }

run mvc init
run mvc config set user.name "Archiving Example"
for seed in 1 2 3; do
  python "$here/../make_model.py" models/tiny-bert --seed "$seed"
  run mvc commit models/tiny-bert -m "training run $seed"
done
first=$(mvc log tiny-bert --json | python -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
second=$(mvc log tiny-bert --json | python -c 'import json,sys; print(json.load(sys.stdin)[1]["id"])')
run mvc tag tiny-bert v1.0.0 "$first"            # a release: never archived
run mvc channel set tiny-bert prod v1.0.0 -m "first release"
run mvc remote add cold "file://$work/cold"
sed 's/unused_for: 90d/unused_for: 0s/' "$here/mvc.yaml" > mvc.yaml

run mvc policy plan
run mvc policy apply
run mvc policy apply                             # again: nothing left to do, nothing repeated
set +e
mvc checkout "tiny-bert@$second" --to restored   # archived: exit 24, and how to restore
status=$?
set -e
[ "$status" = 24 ] && echo "checkout of the archived version exited 24"
run mvc fsck                                     # archived chunks: expected from remote cold
run mvc restore "tiny-bert@$second"
run mvc checkout "tiny-bert@$second" --to restored
run mvc policy log
echo
echo "== done: the store is in $work/.mvc, the cold remote in $work/cold"
