#!/bin/bash
# test-live-qemu.sh - pull-mode backups of a RUNNING QEMU (no guest OS, -S)
# through a fleecing export, while the guest keeps writing.
#
# The disk is attached with blockdev-add + device_add virtio-blk-pci.  Each
# backup begins with one QMP transaction: a new persistent bitmap (the
# checkpoint), for an incremental a frozen copy "backup-vda" of the previous
# checkpoint's bitmap, and blockdev-backup sync=none into a fleece overlay
# (copy-before-write).  The fleece node is exported read-only over NBD as
# "vda" (with qemu:dirty-bitmap:backup-vda for the incremental).
#
# Proves:
#  - a restore onto the image a running QEMU holds is refused (exit 8), even
#    with --force, and leaves it untouched;
#  - guest writes made through the virtio device before and DURING a backup
#    do not change what pullback backs up: restored images hold the
#    point-in-time patterns, not the concurrent ones;
#  - the incremental through the frozen bitmap reads exactly the chunks the
#    guest dirtied since the previous checkpoint (including writes made
#    while the previous backup ran) and nothing else;
#  - each restored image equals what the guest had at that point in time
#    (a copy of the export taken by nbdcopy while it was up), digests agree;
#  - the checkpoint survives a clean QEMU shutdown: an offline incremental
#    since cp2 through qemu-nbd -B cp2 equals the final disk.
source "$(dirname "$0")/functions.sh"
requires qemu-system-x86_64 qemu-img qemu-io qemu-nbd nbdcopy python3

IMG=$T/disk.qcow2 REPO=$T/repo SIZE=$((512 * M))
URI=$(nbd_uri nbd vda)

# begin_backup N [BASE]: checkpoint cpN, fleecing job, NBD export "vda";
# with BASE, also the frozen bitmap backup-vda = BASE, exported.
begin_backup() {
  local n=$1 base=${2:-} actions bitmaps=
  qemu-img create -q -f qcow2 "$T/fleece$n.qcow2" "$SIZE"
  qmp blockdev-add '{"driver":"qcow2","node-name":"fleece","backing":"disk0",
    "file":{"driver":"file","filename":"'"$T/fleece$n.qcow2"'"}}' >/dev/null
  actions='{"type":"block-dirty-bitmap-add","data":{"node":"disk0","name":"cp'"$n"'","persistent":true,"granularity":65536}}'
  if [ -n "$base" ]; then
    actions+=',{"type":"block-dirty-bitmap-add","data":{"node":"disk0","name":"backup-vda","disabled":true,"granularity":65536}}'
    actions+=',{"type":"block-dirty-bitmap-merge","data":{"node":"disk0","target":"backup-vda","bitmaps":["'"$base"'"]}}'
    bitmaps=',"bitmaps":[{"node":"disk0","name":"backup-vda"}]'
  fi
  actions+=',{"type":"blockdev-backup","data":{"job-id":"backup-vda","device":"disk0","target":"fleece","sync":"none"}}'
  qmp transaction '{"actions":['"$actions"']}' >/dev/null
  qmp nbd-server-start '{"addr":{"type":"unix","data":{"path":"'"$(nbd_sock nbd)"'"}}}' >/dev/null
  qmp block-export-add '{"type":"nbd","id":"exp-vda","node-name":"fleece","name":"vda","writable":false'"$bitmaps"'}' >/dev/null
  note "backup $n begun (export vda${base:+, bitmap backup-vda = $base})"
}

# end_backup [BASE]: tear down in order; the backup succeeded, so the base
# checkpoint bitmap is no longer needed.
end_backup() {
  local base=${1:-} i
  qmp block-export-del '{"id":"exp-vda"}' >/dev/null
  qmp nbd-server-stop >/dev/null
  qmp block-job-cancel '{"device":"backup-vda"}' >/dev/null
  "$PYTHON" "$QMP_PY" "$QMP_SOCK" --wait-jobs 30
  for ((i = 0; i < 50; i++)); do # block-export-del completes asynchronously
    if qmp blockdev-del '{"node-name":"fleece"}' >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  [ "$i" -lt 50 ] || fail "fleece node still in use"
  if [ -n "$base" ]; then
    qmp block-dirty-bitmap-remove '{"node":"disk0","name":"backup-vda"}' >/dev/null
    qmp block-dirty-bitmap-remove '{"node":"disk0","name":"'"$base"'"}' >/dev/null
  fi
}

# backup_during NAME [pullback backup options]: run pullback in the
# background while the guest writes GUEST_DURING, then wait for it.
backup_during() {
  local out=$1 pid w
  shift
  pullback backup --repo "$REPO" --vm live --disk "vda=$URI" "$@" --json >"$out" &
  pid=$!
  track_pid "$pid"
  for w in "${GUEST_DURING[@]}"; do guest_io vda "$w"; done
  wait "$pid" || fail "pullback backup failed: $(cat "$out")"
  cat "$out"
}

step "512 MiB qcow2 with data: 0x11 at 0+8M, 0x12 at 100M+1M"
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
qio "$IMG" qcow2 "write -P 0x11 0 $((8 * M))" "write -P 0x12 $((100 * M)) $((1 * M))"
pullback init --repo "$REPO"

step "QEMU (paused, no guest), disk attached with blockdev-add + device_add"
start_qemu vm
qmp blockdev-add '{"driver":"qcow2","node-name":"disk0","file":{"driver":"file","filename":"'"$IMG"'"}}' >/dev/null
qmp device_add '{"driver":"virtio-blk-pci","id":"vda","drive":"disk0"}' >/dev/null

step "backup 1 (full, checkpoint cp1) while the guest writes"
begin_backup 1
BEFORE1=("write -P 0xab 0 $((1 * M))" "write -P 0xac $((100 * M)) $((64 * K))")
for w in "${BEFORE1[@]}"; do guest_io vda "$w"; done
GUEST_DURING=("write -P 0xad $((2 * M)) $((1 * M))" "write -P 0xae $((50 * M)) $((64 * K))")
backup_during "$T/b1.json" --checkpoint cp1
nbdcopy "$URI" "$T/pit1.raw"   # what the export showed: the point in time
pullback digest "$URI" --repo "$REPO" --json >"$T/d1.json"
end_backup
P1=$(json_get "$T/b1.json" .point)
[ "$(json_get "$T/b1.json" .mode)" = full ] || fail "mode of backup 1"
[ "$(json_get "$T/d1.json" .digest)" = "$(json_get "$T/b1.json" .disks[0].digest)" ] || fail "digest of export 1"
check_patterns "$T/pit1.raw" raw "0x11 0 $((8 * M))" "0x12 $((100 * M)) $((1 * M))" "0 $((50 * M)) $((64 * K))"
CS=$(pullback show --repo "$REPO" --point "$P1" --json >"$T/s1.json" && json_get "$T/s1.json" .disks[0].chunk_size)
TOTAL=$((SIZE / CS))

step "guest writes after backup 1 (unaligned ones, the last sector, a zero write)"
AFTER1=("write -P 0xc1 $((4 * M)) $((1 * M))"
        "write -P 0xc2 $((300 * M + 4 * K)) $((8 * K))"
        "write -P 0xc3 $((SIZE - 512)) 512"
        "write -z $((100 * M + 512 * K)) $((64 * K))")
for w in "${AFTER1[@]}"; do guest_io vda "$w"; done

step "backup 2 (incremental since cp1 via the frozen bitmap, checkpoint cp2) while the guest writes"
begin_backup 2 cp1
GUEST_DURING=("write -P 0xdd $((4 * M)) $((1 * M))" "write -P 0xde $((200 * M)) $((64 * K))")
backup_during "$T/b2.json" --since cp1 --bitmap vda=backup-vda --checkpoint cp2
nbdcopy "$URI" "$T/pit2.raw"
pullback digest "$URI" --repo "$REPO" --json >"$T/d2.json"
end_backup cp1
P2=$(json_get "$T/b2.json" .point)
[ "$(json_get "$T/b2.json" .mode)" = incremental ] || fail "mode of backup 2"
[ "$(json_get "$T/b2.json" .parent)" = "$P1" ] || fail "parent of backup 2"
[ "$(json_get "$T/d2.json" .digest)" = "$(json_get "$T/b2.json" .disks[0].digest)" ] || fail "digest of export 2"
DIRTY=$(chunks_touched "$CS" "${BEFORE1[@]}" "write 0 $((2 * M)) $((1 * M))" "write 0 $((50 * M)) $((64 * K))" "${AFTER1[@]}")
R=$(json_get "$T/b2.json" .disks[0].chunks_read) Z=$(json_get "$T/b2.json" .disks[0].chunks_zero)
KEPT=$(json_get "$T/b2.json" .disks[0].chunks_kept)
note "dirty chunks since cp1: $DIRTY; read $R, zero $Z, kept $KEPT"
[ "$KEPT" = $((TOTAL - DIRTY)) ] || fail "chunks_kept $KEPT, expected $((TOTAL - DIRTY)): the guest dirtied $DIRTY"
[ "$R" -le "$DIRTY" ] && [ $((R + Z)) -ge "$DIRTY" ] || fail "read $R + zero $Z chunks do not cover the $DIRTY dirty ones"
[ "$(json_get "$T/b2.json" .disks[0].bytes_read)" -le $((DIRTY * CS)) ] || fail "incremental read too much"
check_patterns "$T/pit2.raw" raw "0xab 0 $((1 * M))" "0xad $((2 * M)) $((1 * M))" "0xc1 $((4 * M)) $((1 * M))" \
  "0 $((200 * M)) $((64 * K))"

step "the guest did write 0xdd/0xde during backup 2 (the live disk has them)"
guest_io vda "read -P 0xdd $((4 * M)) $((1 * M))"
guest_io vda "read -P 0xde $((200 * M)) $((64 * K))"

step "restore both points: equal to the point-in-time views, with the point-in-time patterns"
check_restore "$REPO" "$P1" live vda "$T/pit1.raw"
check_restore "$REPO" "$P2" live vda "$T/pit2.raw"
check_patterns "$T/restore-live-vda-$P1.raw" raw "0x11 0 $((8 * M))" "0x12 $((100 * M)) $((1 * M))" \
  "0 $((50 * M)) $((64 * K))" "0 $((SIZE - 512)) 512"
check_patterns "$T/restore-live-vda-$P2.qcow2" qcow2 "0xab 0 $((1 * M))" "0x11 $((1 * M)) $((1 * M))" \
  "0xad $((2 * M)) $((1 * M))" "0x11 $((3 * M)) $((1 * M))" "0xc1 $((4 * M)) $((1 * M))" "0x11 $((5 * M)) $((3 * M))" \
  "0xae $((50 * M)) $((64 * K))" "0xac $((100 * M)) $((64 * K))" "0x12 $((100 * M + 64 * K)) $((448 * K))" \
  "0 $((100 * M + 512 * K)) $((64 * K))" "0x12 $((100 * M + 576 * K)) $((448 * K))" \
  "0 $((200 * M)) $((64 * K))" "0xc2 $((300 * M + 4 * K)) $((8 * K))" "0xc3 $((SIZE - 512)) 512"

step "restoring onto the disk the running QEMU has open is refused, even with --force"
SUM=$(sha256sum <"$IMG")
expect_fail 8 pullback restore --repo "$REPO" --point "$P1" --vm live --disk vda --to "$IMG" \
  --format qcow2 --force
expect_err "locked"
[ "$(sha256sum <"$IMG")" = "$SUM" ] || fail "a refused restore changed the running VM's disk"

step "clean shutdown keeps checkpoint cp2; offline incremental since cp2"
quit_qemu
qemu-img info "$IMG" | grep -q 'name: cp2' || fail "bitmap cp2 not in the image after quit"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp3
start_qemu_nbd off -r -f qcow2 -B cp2 "$IMG"
pullback backup --repo "$REPO" --vm live --disk "vda=$(nbd_uri off)" --since cp2 --bitmap vda=cp2 \
  --checkpoint cp3 --json >"$T/b3.json"
stop_server off
cat "$T/b3.json"
P3=$(json_get "$T/b3.json" .point)
[ "$(json_get "$T/b3.json" .parent)" = "$P2" ] || fail "parent of backup 3"
KEPT=$(json_get "$T/b3.json" .disks[0].chunks_kept)
[ "$KEPT" = $((TOTAL - $(chunks_touched "$CS" "${GUEST_DURING[@]}"))) ] || fail "backup 3 kept $KEPT chunks"
save_raw "$IMG" qcow2 "$T/p3.raw"
check_restore "$REPO" "$P3" live vda "$T/p3.raw"
pullback verify --repo "$REPO"
echo PASS
