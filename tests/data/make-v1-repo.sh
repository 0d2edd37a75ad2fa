#!/bin/bash
# tests/data/make-v1-repo.sh - how tests/data/v1-repo.tar.gz was made:
# a repository with catalog schema version 1, written by pullback 0.1.0
# as of commit 4c40a4f (before space management), for tests/test-upgrade.sh.
#   usage: make-v1-repo.sh OLD_PULLBACK_BINARY OUT.tar.gz
# A 4 MiB qcow2 disk, chunk size 64K, a full and two incrementals through
# persistent bitmaps; "sums" holds the SHA-256 of the disk at each point.
set -euo pipefail
OLD=$(realpath "$1") OUT=$(realpath "$2")
W=$(mktemp -d) && cd "$W"
serve() { qemu-nbd -r -f qcow2 ${1:+-B $1} --socket="$W/s.sock" --fork --persistent --pid-file="$W/nbd.pid" d.qcow2; sleep 0.5; }
stop() { kill "$(cat nbd.pid)"; sleep 0.5; }
snap() { qemu-img convert -f qcow2 -O raw d.qcow2 "p$1.raw"; }
URI="vda=nbd+unix:///?socket=$W/s.sock"
qemu-img create -q -f qcow2 d.qcow2 4M
qemu-img bitmap --add --enable -f qcow2 d.qcow2 cp1
qemu-io -f qcow2 -c "write -P 0x11 0 1M" -c "write -P 0x22 2M 512K" d.qcow2 >/dev/null
"$OLD" init --repo repo --chunk-size 64K
serve; "$OLD" backup --repo repo --vm vm1 --disk "$URI" --checkpoint cp1; stop; snap 1
qemu-img bitmap --add --enable -f qcow2 d.qcow2 cp2
qemu-io -f qcow2 -c "write -P 0x33 128K 64K" -c "write -P 0x44 3M 256K" d.qcow2 >/dev/null
serve cp1; "$OLD" backup --repo repo --vm vm1 --disk "$URI" --since cp1 --bitmap vda=cp1 --checkpoint cp2; stop; snap 2
qemu-io -f qcow2 -c "write -P 0x55 0 64K" -c "write -z 2M 128K" d.qcow2 >/dev/null
serve cp2; "$OLD" backup --repo repo --vm vm1 --disk "$URI" --since cp2 --bitmap vda=cp2 --checkpoint cp3; stop; snap 3
sha256sum p*.raw >sums
tar czf "$OUT" repo d.qcow2 sums
rm -rf "$W"
