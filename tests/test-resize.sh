#!/bin/bash
# test-resize.sh - incrementals of a disk that grew, shrank and grew again.
#
# The dirty bitmap says nothing about the area a resize added or removed;
# pullback must still produce points that restore to exactly the image of
# the time, size included.  Sizes are deliberately not multiples of the
# chunk size (partial last chunk).
#
# Proves, for each of: grown (qemu-img resize), shrunk (resize --shrink)
# and grown again after the shrink (old data beyond the small size must
# not come back):
#  - the incremental succeeds, reports the new size, and the parent chain;
#  - the restored raw and qcow2 images equal the source (content AND size),
#    digests agree (check_restore).
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3

IMG=$T/disk.qcow2 REPO=$T/repo
pullback init --repo "$REPO"

# incremental N SINCE: export with bitmap SINCE, back up with checkpoint cpN,
# save the expected raw image, check size and restore.
PREV=
incremental() {
  local n=$1 since=${2:-} size
  local opts=(--checkpoint "cp$n")
  [ -n "$since" ] && opts+=(--since "$since" --bitmap "vda=$since")
  qemu-img bitmap --add --enable -f qcow2 "$IMG" "cp$n"
  start_qemu_nbd vda -r -f qcow2 ${since:+-B "$since"} "$IMG"
  pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri vda)" "${opts[@]}" --json >"$T/b$n.json"
  stop_server vda
  cat "$T/b$n.json"
  save_raw "$IMG" qcow2 "$T/p$n.raw"
  size=$(image_size "$IMG" qcow2)
  [ "$(json_get "$T/b$n.json" .disks[0].size)" = "$size" ] || fail "point $n: size is not $size"
  if [ -n "$PREV" ]; then
    [ "$(json_get "$T/b$n.json" .parent)" = "$PREV" ] || fail "point $n: parent"
    [ "$(json_get "$T/b$n.json" .mode)" = incremental ] || fail "point $n: mode"
  fi
  PREV=$(json_get "$T/b$n.json" .point)
  check_restore "$REPO" "$PREV" vm1 vda "$T/p$n.raw"
}

step "256 MiB image with data up to its last byte; full backup (cp1)"
qemu-img create -q -f qcow2 "$IMG" $((256 * M))
qio "$IMG" qcow2 "write -P 0x11 0 $((1 * M))" "write -P 0x12 $((250 * M)) $((6 * M))"
incremental 1

step "grown to 356 MiB + 4 KiB, data written in the new area and at the new end; incremental since cp1"
qemu-img resize -q -f qcow2 "$IMG" $((356 * M + 4 * K))
qio "$IMG" qcow2 "write -P 0x21 $((300 * M)) $((1 * M))" "write -P 0x22 $((356 * M)) $((4 * K))"
incremental 2 cp1
check_patterns "$T/restore-vm1-vda-$PREV.raw" raw "0x12 $((250 * M)) $((6 * M))" "0x21 $((300 * M)) $((1 * M))" \
  "0x22 $((356 * M)) $((4 * K))"

step "shrunk to 200 MiB - 4 KiB (cuts a chunk in two); incremental since cp2"
qemu-img resize -q -f qcow2 --shrink "$IMG" $((200 * M - 4 * K))
qio "$IMG" qcow2 "write -P 0x31 $((200 * M - 8 * K)) $((4 * K))"
incremental 3 cp2

step "grown back to 256 MiB: the area beyond 200 MiB must read as zero, not as point 1's data"
qemu-img resize -q -f qcow2 "$IMG" $((256 * M))
incremental 4 cp3
check_patterns "$T/restore-vm1-vda-$PREV.qcow2" qcow2 "0x31 $((200 * M - 8 * K)) $((4 * K))" \
  "0 $((200 * M - 4 * K)) $((56 * M + 4 * K))"
pullback verify --repo "$REPO"
echo PASS
