#!/bin/bash
# pullback - bench/multiconn.sh: what several NBD connections per disk
# (--connections) buy a full backup, against two kinds of server.
#
# Usage: bench/multiconn.sh [SIZE_GIB=2] [RUNS=3] [CONNS="1 2 4"] [WORKDIR]
#   WORKDIR (default: a new directory in /var/tmp) is removed at exit, as
#   in the other bench scripts, so it must not exist or be empty
#   env RDELAY (default 2ms): the per-read delay of the second server
# Run as root (settle drops the page cache) from a built tree (./pullback
# must exist) on a quiet machine.  Not part of `make check`.
#
# The image is bench/lib.sh's fill_image (SIZE_GIB GiB virtual, 3/4 data:
# system binaries, text, random bytes, zero stripes) and a raw copy of it.
# Servers, each on a Unix socket, each advertising multi-conn:
#   qemu-nbd: qemu-nbd -r --shared=16 on the qcow2 (one main loop thread
#     serves every connection: the case of a local fleece export);
#   nbdkit-delay: nbdkit -t 1 file on the raw copy with the delay filter
#     (rdelay=RDELAY): every connection answers one read at a time, each
#     after RDELAY, so one connection is bound by latency, not bandwidth
#     (the case of a server far away, or one that serialises each client).
# For each server, RUNS rounds of a full backup into a fresh repository
# with each CONNS value (the order reversed every other round); each
# timed command starts after settle.  Prints a markdown table (median wall
# seconds, MiB/s of data, the connections the backup reported) on stdout.
set -euo pipefail
GIB=${1:-2}
RUNS=${2:-3}
CONNS=${3:-"1 2 4"}
W=${4:-$(mktemp -d /var/tmp/pullback-mc.XXXXXX)}
if [ -n "${4:-}" ] && [ -n "$(ls -A "$W" 2>/dev/null)" ]; then
  echo "$0: $W is not empty (it would be removed at exit)" >&2; exit 2
fi
RDELAY=${RDELAY:-2ms}
TOP=$(cd "$(dirname "$0")/.." && pwd)
PB=$TOP/pullback
PIDF=
cleanup() { [ -n "$PIDF" ] && [ -s "$PIDF" ] && kill "$(cat "$PIDF")" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W"; cd "$W"
source "$TOP/bench/lib.sh"

serve() { # SERVER: start it on $W/s.sock
  PIDF=$W/s.pid; rm -f "$PIDF" s.sock
  case $1 in
    qemu-nbd) qemu-nbd -r -f qcow2 --persistent --shared=16 --socket="$W/s.sock" --fork --pid-file="$PIDF" disk.qcow2 ;;
    nbdkit-delay) nbdkit -U "$W/s.sock" -P "$PIDF" -t 1 file disk.raw --filter=delay rdelay="$RDELAY" ;;
  esac
  while [ ! -S s.sock ]; do sleep 0.1; done
}
unserve() { kill "$(cat "$PIDF")"; while kill -0 "$(cat "$PIDF")" 2>/dev/null; do sleep 0.1; done; PIDF=; }

one() { # SERVER CONNS: one full backup; appends "secs conns" to SERVER-CONNS.m
  rm -rf repo; "$PB" init --repo repo > /dev/null
  settle
  local t0; t0=$(date +%s.%N)
  "$PB" backup --repo repo --vm v --disk "vda=nbd+unix:///?socket=$W/s.sock" --connections "$2" --json > out.json
  echo "$(secs "$t0") $(json out.json disks.0.connections)" >> "$1-$2.m"
}

fill_image
qemu-img convert -O raw disk.qcow2 disk.raw
DATA=$(data_bytes)
echo "image: ${GIB} GiB virtual, $((DATA >> 20)) MiB of data; $(nproc) cores; nbdkit rdelay=$RDELAY" >&2
for server in qemu-nbd nbdkit-delay; do
  serve "$server"
  for ((r = 1; r <= RUNS; r++)); do
    order=$CONNS; [ $((r % 2)) = 0 ] && order=$(echo $CONNS | tr ' ' '\n' | tac | tr '\n' ' ')
    for c in $order; do one "$server" "$c"; echo "$server round $r --connections $c: $(tail -1 "$server-$c.m")" >&2; done
  done
  unserve
done

echo "| server | --connections | connections used | wall s (median of $RUNS) | MiB/s of data |"
echo "|---|---|---|---|---|"
for server in qemu-nbd nbdkit-delay; do
  for c in $CONNS; do
    t=$(awk '{print $1}' "$server-$c.m" | median)
    echo "| $server | $c | $(awk '{print $2}' "$server-$c.m" | sort -u | tr '\n' ' ')| $t | $(mbps "$DATA" "$t") |"
  done
done
