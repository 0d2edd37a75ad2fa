#!/bin/bash
# test-blockdev.sh - restore onto a block device (a loop device).
#
# Proves:
#  - restore --format raw onto a block device filled with garbage writes
#    every byte: data chunks, and zero chunks explicitly zeroed (a device
#    has no holes), so the device then equals the source image;
#  - an existing device is refused without --force (exit 8), untouched;
#  - qcow2 onto a block device is refused (exit 2);
#  - a device smaller than the disk is refused (exit 8), untouched.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd losetup cmp
requires_root

IMG=$T/disk.qcow2 REPO=$T/repo SIZE=$((64 * M))

attach() { # FILE -> prints the loop device; detached at exit
  local dev
  dev=$(losetup -f --show "$1") || fail "losetup $1"
  cleanup_fn "losetup -d $dev"
  echo "$dev"
}

step "64 MiB image: data, zero runs, a pattern in the last chunk"
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
randfile "$T/r" $((3 * M))
qio "$IMG" qcow2 "write -s $T/r $((1 * M)) $((3 * M))" "write -P 0x77 $((40 * M)) 100k" \
  "write -P 0x33 $((SIZE - 4096)) 4096"
save_raw "$IMG" qcow2 "$T/src.raw"
pullback init --repo "$REPO"
start_qemu_nbd vda -r -f qcow2 "$IMG"
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri vda)" --json >"$T/b.json"
stop_server vda
cat "$T/b.json"

step "loop devices over garbage: one of the disk's size, one too small"
head -c "$SIZE" /dev/urandom >"$T/dev.img"
head -c $((SIZE / 2)) /dev/urandom >"$T/small.img"
DEV=$(attach "$T/dev.img")
SMALL=$(attach "$T/small.img")
BEFORE=$(sha256sum <"$DEV")
note "devices $DEV ($SIZE bytes), $SMALL ($((SIZE / 2)) bytes)"

step "refused: existing device without --force, qcow2 onto a device, too small"
expect_fail 8 pullback restore --repo "$REPO" --point 1 --vm vm1 --disk vda --to "$DEV"
expect_err "exists"
expect_fail 2 pullback restore --repo "$REPO" --point 1 --vm vm1 --disk vda --to "$DEV" \
  --format qcow2 --force
expect_err "block device"
[ "$(sha256sum <"$DEV")" = "$BEFORE" ] || fail "a refused restore changed $DEV"
SBEFORE=$(sha256sum <"$SMALL")
expect_fail 8 pullback restore --repo "$REPO" --point 1 --vm vm1 --disk vda --to "$SMALL" --force
expect_err "bytes"
[ "$(sha256sum <"$SMALL")" = "$SBEFORE" ] || fail "a refused restore changed $SMALL"

step "restore --force onto the device"
pullback restore --repo "$REPO" --point 1 --vm vm1 --disk vda --to "$DEV" --force --json >"$T/r.json"
cat "$T/r.json"
cmp "$DEV" "$T/src.raw" || fail "$DEV differs from the source image"
[ "$(json_get "$T/r.json" .digest)" = "$(json_get "$T/b.json" .disks[0].digest)" ] ||
  fail "restore digest differs from the backup's"
note "device equals the source, zero chunks included"
