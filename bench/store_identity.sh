#!/usr/bin/env bash
# Does this checkout write the same store as revision REV? Runs CONFIG (default: the quickstart)
# with the code of REV (a temporary git worktree) and with the working tree, to the same store
# path, and compares the two stores array by array, bit for bit, and attribute by attribute
# (times and versions aside) with `python -m losslines.store.compare`.
#
#   bash bench/store_identity.sh REV [CONFIG] [--set key=value ...]
#
# Exit status: 0 identical, 1 different, 2 usage or run error. Takes two runs' time (the
# quickstart: ~2 x 100 s on 2 CPU cores). PYTHON=... picks the interpreter (with losslines'
# dependencies installed).
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash bench/store_identity.sh REV [CONFIG] [--set key=value ...]" >&2
    exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REV="$1"; shift
CONFIG="${1:-configs/quickstart.toml}"; [ $# -gt 0 ] && shift
PY="${PYTHON:-python}"
WORK="$(mktemp -d)"
trap 'git -C "$REPO" worktree remove --force "$WORK/rev" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
git -C "$REPO" worktree add --detach -q "$WORK/rev" "$REV"

run_at() {  # run_at SOURCE_DIR [--set ...]: the CLI of that source tree writes $WORK/store.zarr
    local src="$1"; shift
    (cd "$REPO" && PYTHONPATH="$src" "$PY" -c 'import sys; from losslines.cli import main; sys.exit(main(sys.argv[1:]))' \
        run "$CONFIG" --out "$WORK/store.zarr" -q "$@")
}
echo "store_identity: $CONFIG with $REV ..." >&2
run_at "$WORK/rev" "$@"
mv "$WORK/store.zarr" "$WORK/rev.zarr"
echo "store_identity: $CONFIG with the working tree ..." >&2
run_at "$REPO" "$@"
# the stores were written to the same path, so even config.store.path must agree
mkdir "$WORK/a" && mv "$WORK/rev.zarr" "$WORK/a/store.zarr"
(cd "$REPO" && PYTHONPATH="$REPO" "$PY" -m losslines.store.compare "$WORK/a/store.zarr" "$WORK/store.zarr")
