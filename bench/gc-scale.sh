#!/bin/bash
# bench/gc-scale.sh [NCHUNKS] - gc on a repository of NCHUNKS chunks
# (default 1000000), from a built tree.  EATMYDATA=1 runs it under
# eatmydata (apt-get install eatmydata): fsync becomes a no-op, which
# makes building a million one-object-per-chunk files take minutes instead
# of most of an hour; gc itself fsyncs nothing but SQLite commits.
# Needs about 5 GB of free space (N small files) in $TMPDIR (or /var/tmp);
# takes a few minutes for a million chunks.  Prints a timing per step.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
W=$(mktemp -d "${TMPDIR:-/var/tmp}/gc-scale.XXXXXX")
trap 'rm -rf "$W"' EXIT
make -s bench/gc-scale
PRE=()
[ -n "${EATMYDATA:-}" ] && PRE=(eatmydata)
"${PRE[@]}" /usr/bin/time -f "peak RSS %M KiB, %e s wall" bench/gc-scale "$W/repo" "$N"
du -sh "$W/repo"
