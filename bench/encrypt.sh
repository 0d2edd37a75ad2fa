#!/bin/bash
# pullback - bench/encrypt.sh: what encryption costs.  Full backup and
# restore to raw of the same image into a plain and an encrypted
# repository, alternating, RUNS times each; prints the medians.
#
# Usage: bench/encrypt.sh [SIZE_GIB=2] [RUNS=3] [WORKDIR]
# Run from a built tree (./pullback must exist).  Not part of `make check`.
#
# The image is bench/core.sh's (lib.sh fill_image: system binaries and
# text, random data, zero regions), served read-only by qemu-nbd on a Unix
# socket.  Each run starts from an empty repository, so every chunk is
# compressed (and encrypted) and written.  The key file is unwrapped, as
# for a systemd job: the passphrase KDF is a one-off cost per command, not
# part of the throughput.  Target (issue 6): encrypted within 15% of plain.
set -euo pipefail
GIB=${1:-2}
RUNS=${2:-3}
W=${3:-$(mktemp -d /var/tmp/pullback-bench.XXXXXX)}
TOP=$(cd "$(dirname "$0")/.." && pwd)
PB=$TOP/pullback
NBDPID=
cleanup() { [ -n "$NBDPID" ] && kill "$NBDPID" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W"; cd "$W"
source "$TOP/bench/lib.sh"

fill_image
DATA=$(data_bytes)
qemu-nbd -r -f qcow2 --persistent --socket="$W/nbd.sock" --fork --pid-file="$W/nbd.pid" disk.qcow2
NBDPID=$(cat nbd.pid)
URI="nbd+unix:///?socket=$W/nbd.sock"
"$PB" key create --no-passphrase bench.key 2>/dev/null >/dev/null

one_run() { # MODE RUN: plain or encrypted; appends "backup_s restore_s stored" to MODE.txt
  local mode=$1 repo=repo-$1-$2 tb tr key=()
  [ "$mode" = encrypted ] && key=(--key-file bench.key)
  # A fresh directory each run, removed only at the end: ext4 searches
  # for free inodes far longer right after many files were deleted, which
  # would penalise whichever mode runs after a removal.  settle (lib.sh)
  # starts each timed command with no dirty pages and a cold cache.
  rm -f r.raw
  if [ "$mode" = encrypted ]; then
    "$PB" init --repo "$repo" --encrypt "${key[@]}" >/dev/null
  else
    "$PB" init --repo "$repo" >/dev/null
  fi
  settle
  t0=$(date +%s.%N)
  "$PB" backup --repo "$repo" "${key[@]}" --vm bench --disk vda="$URI" --json >full.json
  tb=$(secs "$t0")
  settle
  t0=$(date +%s.%N)
  "$PB" restore --repo "$repo" "${key[@]}" --point latest --vm bench --disk vda --to r.raw >/dev/null
  tr=$(secs "$t0")
  qemu-img compare -q -f qcow2 -F raw disk.qcow2 r.raw
  echo "$tb $tr $(json full.json disks.0.bytes_new)" >>"$mode.txt"
}

# Alternate which mode goes first.
for ((i = 0; i < RUNS; i++)); do
  if ((i % 2 == 0)); then one_run plain "$i"; one_run encrypted "$i"
  else one_run encrypted "$i"; one_run plain "$i"; fi
done

echo "image: ${GIB} GiB virtual, $((DATA >> 20)) MiB allocated; $(nproc) cores; $RUNS runs each, medians"
echo
echo "| repository | full backup s | MB/s | restore raw s | MB/s | stored MiB |"
echo "|---|---|---|---|---|---|"
for mode in plain encrypted; do
  b=$(cut -d' ' -f1 "$mode.txt" | median)
  r=$(cut -d' ' -f2 "$mode.txt" | median)
  st=$(cut -d' ' -f3 "$mode.txt" | median)
  printf '| %s | %.2f | %s | %.2f | %s | %d |\n' "$mode" "$b" "$(mbps "$DATA" "$b")" \
    "$r" "$(mbps "$DATA" "$r")" $((st >> 20))
  eval "${mode}_b=$b ${mode}_r=$r"
done
echo
awk -v pb="$plain_b" -v eb="$encrypted_b" -v pr="$plain_r" -v er="$encrypted_r" 'BEGIN {
  printf "encrypted / plain throughput: backup %.2f, restore %.2f\n", pb / eb, pr / er }'
