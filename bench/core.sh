#!/bin/bash
# pullback - bench/core.sh: throughput of full/incremental backup and restore,
# and the chunk-size trade-off, on one generated image.
#
# Usage: bench/core.sh [SIZE_GIB=2] [CHUNK_SIZES="64K 256K 1M 4M"] [WORKDIR]
# Run from a built tree (./pullback must exist).  Not part of `make check`.
#
# The image: SIZE_GIB GiB virtual qcow2 holding, in 64 MiB stripes, system
# binaries and text from /usr (compressible), random data (incompressible)
# and zero regions, about 3/4 data.  It is served read-only by qemu-nbd on a
# Unix socket.  For each chunk size: a full backup, then 2000 scattered 4 KiB
# writes recorded by a persistent dirty bitmap and an incremental backup,
# then restore of the latest point to raw and to qcow2.  Each timed command
# starts after settle (lib.sh).  Prints a markdown
# table (wall seconds, MB/s of virtual disk content, bytes stored, catalog
# size) on stdout.
set -euo pipefail
GIB=${1:-2}
SIZES=${2:-"64K 256K 1M 4M"}
W=${3:-$(mktemp -d /var/tmp/pullback-bench.XXXXXX)}
TOP=$(cd "$(dirname "$0")/.." && pwd)
PB=${PB:-$TOP/pullback}  # bench/compare.sh passes its copy
NBDPID=
cleanup() { [ -n "$NBDPID" ] && kill "$NBDPID" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W"; cd "$W"

source "$TOP/bench/lib.sh"

serve() { # $1: bitmap or empty
  [ -n "$NBDPID" ] && kill "$NBDPID" && sleep 0.3
  qemu-nbd -r -f qcow2 --persistent ${1:+-B "$1"} --socket="$W/nbd.sock" --fork --pid-file="$W/nbd.pid" disk.qcow2
  NBDPID=$(cat nbd.pid)
}

fill_image
cp disk.qcow2 base.qcow2
DATA=$(data_bytes)
URI="nbd+unix:///?socket=$W/nbd.sock"
echo "image: ${GIB} GiB virtual, $((DATA >> 20)) MiB allocated; $(nproc) cores"
echo
echo "| chunk | full s | full MB/s | full stored MiB | incr s | incr read KiB | incr stored KiB | catalog KiB | restore raw s (MB/s) | restore qcow2 s (MB/s) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for cs in $SIZES; do
  cp base.qcow2 disk.qcow2; rm -rf repo r.raw r.qcow2
  "$PB" init --repo repo --chunk-size "$cs" >/dev/null
  serve ""
  settle
  t0=$(date +%s.%N)
  "$PB" backup --repo repo --vm bench --disk vda="$URI" --checkpoint c1 --json > full.json
  tf=$(secs "$t0")
  kill "$NBDPID"; NBDPID=; sleep 0.3
  qemu-img bitmap --add --enable -f qcow2 disk.qcow2 c1
  python3 -c "
import random; random.seed(42)
for _ in range(2000): print('write -P 0x5a %d 4096' % (random.randrange(0, $GIB << 30, 4096)))" |
    sed 's/^/-c\n/' | tr '\n' '\0' | xargs -0 qemu-io -f qcow2 disk.qcow2 >/dev/null
  serve c1
  settle
  t0=$(date +%s.%N)
  "$PB" backup --repo repo --vm bench --disk vda="$URI" --since c1 --bitmap vda=c1 --checkpoint c2 --json > inc.json
  ti=$(secs "$t0")
  settle; t0=$(date +%s.%N); "$PB" restore --repo repo --point latest --vm bench --disk vda --to r.raw >/dev/null; tr=$(secs "$t0")
  settle; t0=$(date +%s.%N); "$PB" restore --repo repo --point latest --vm bench --disk vda --to r.qcow2 --format qcow2 >/dev/null; tq=$(secs "$t0")
  qemu-img compare -q -f qcow2 -F raw disk.qcow2 r.raw
  qemu-img compare -q -f qcow2 -F qcow2 disk.qcow2 r.qcow2
  kill "$NBDPID"; NBDPID=
  cat=$(( $(du -sk repo/catalog.db* | awk '{s += $1} END {print s}') ))
  printf '| %s | %.2f | %s | %d | %.2f | %d | %d | %d | %.2f (%s) | %.2f (%s) |\n' "$cs" "$tf" "$(mbps "$DATA" "$tf")" \
    $(( $(json full.json disks.0.bytes_new) >> 20 )) "$ti" \
    $(( $(json inc.json disks.0.bytes_read) >> 10 )) \
    $(( $(json inc.json disks.0.bytes_new) >> 10 )) "$cat" \
    "$tr" "$(mbps "$DATA" "$tr")" "$tq" "$(mbps "$DATA" "$tq")"
done
