#!/bin/bash
# test-no-allocation.sh - backups from servers that cannot say where the
# holes are.
#
# The image is a fully allocated raw file whose zero regions were written as
# data.  It is served by nbdkit's file plugin on a Unix socket two ways:
#  - --no-sr: no structured replies, so no meta contexts at all;
#  - the noextents filter: base:allocation reports everything as data.
#
# Proves, for both: the backup works, every byte is read (nothing says it
# may be skipped), zero chunks are recognised by content and stored as zero
# (chunks_zero > 0, bytes_new only the real data), pullback digest of the
# export equals the point's digest, and the point restores exactly, the raw
# image sparse and the qcow2 image thin.  And an incremental from a server
# without meta contexts is refused [6] naming the missing context.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-img qemu-io python3

IMG=$T/full.raw SIZE=$((64 * M)) CS=$((1 * M))

step "64 MiB raw image, fully allocated: 4 MiB random, 1 MiB of 0x5a, zeros written as data"
dd if=/dev/zero of="$IMG" bs=1M count=64 status=none
randfile "$T/r4" $((4 * M))
qio "$IMG" raw "write -s $T/r4 $((8 * M)) $((4 * M))" "write -P 0x5a $((40 * M + 512 * K)) $((1 * M))"
[ "$(allocated_bytes "$IMG")" -ge "$SIZE" ] || fail "the image is not fully allocated"
cp --sparse=always "$IMG" "$T/want.raw" # the same content, with holes (the bound for sparseness)
DATA=$(data_chunks "$T/want.raw" "$CS")
note "$DATA chunks of $((SIZE / CS)) hold data"

for variant in no-sr noextents; do
  step "server: nbdkit file ($variant)"
  REPO=$T/repo-$variant
  pullback init --repo "$REPO" --chunk-size 1M
  if [ $variant = no-sr ]; then
    start_nbdkit $variant --no-sr file "$IMG"
  else
    start_nbdkit $variant --filter=noextents file "$IMG"
  fi
  URI=$(nbd_uri $variant)
  pullback backup --repo "$REPO" --vm vm1 --disk "vda=$URI" --checkpoint cp1 --json >"$T/b-$variant.json"
  cat "$T/b-$variant.json"
  pullback digest "$URI" --repo "$REPO" --json >"$T/d-$variant.json"
  if [ $variant = no-sr ]; then
    expect_fail 6 pullback backup --repo "$REPO" --vm vm1 --disk "vda=$URI" --since cp1 --bitmap vda=cp1
    expect_err "qemu:dirty-bitmap:cp1"
  fi
  stop_server $variant
  J=$T/b-$variant.json
  check_counts "$J" || fail "$variant: chunk counts"
  [ "$(json_get "$J" .disks[0].bytes_read)" = "$SIZE" ] || fail "$variant: not every byte was read"
  [ "$(json_get "$J" .disks[0].chunks_zero)" = $((SIZE / CS - DATA)) ] ||
    fail "$variant: chunks_zero is not $((SIZE / CS - DATA))"
  [ "$(json_get "$J" .disks[0].chunks_new)" -le $((DATA + 2)) ] || fail "$variant: too many new chunks"
  NEW=$(json_get "$J" .disks[0].bytes_new)
  [ "$NEW" -le $((4 * M + 512 * K)) ] || fail "$variant: bytes_new $NEW: zeros were stored"
  [ "$NEW" -ge $((4 * M)) ] || fail "$variant: bytes_new $NEW: random data cannot shrink"
  [ "$(json_get "$T/d-$variant.json" .digest)" = "$(json_get "$J" .disks[0].digest)" ] ||
    fail "$variant: digest of the export != digest of the point"
  [ "$(point_ids "$REPO")" = "$(json_get "$J" .point)" ] || fail "$variant: points"
  check_restore "$REPO" "$(json_get "$J" .point)" vm1 vda "$T/want.raw"
done
echo PASS
