#!/bin/bash
# test-offline-chain.sh - a full backup and two incrementals of a qcow2 image
# served by qemu-nbd with persistent dirty bitmaps (the offline flow).
#
# Proves:
#  - full backup (--checkpoint cp1): mode "full", no parent, reads only the
#    chunks that hold data (per base:allocation);
#  - incrementals (--since cp1 --bitmap vda=cp1 --checkpoint cp2, then
#    --since cp2): mode "incremental", parent = the previous point, and only
#    the chunks the bitmap marks dirty are read (chunks_read + chunks_zero ==
#    dirty chunks, chunks_kept == the rest, bytes_read tiny next to the disk),
#    after aligned and unaligned writes, writes crossing chunk boundaries,
#    zero writes over data, discards and writes to the last chunk;
#  - EVERY point restores, to raw and to qcow2, to exactly the image as it
#    was at that point (qemu-img compare + size), the raw restore is sparse
#    and the qcow2 restore thin; pullback digest of the restored images, of
#    the saved copies and of the live export all equal show's digest;
#  - list/show report the points and the chain; verify passes.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3

IMG=$T/disk.qcow2 REPO=$T/repo SIZE=$((512 * M))

step "image: 512 MiB qcow2 with random data, patterns, explicit zeros, data in the last chunk"
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
randfile "$T/r1" $((4 * M))
randfile "$T/r2" $((2 * M))
W1=("write -s $T/r1 0 $((4 * M))"
    "write -P 0x11 $((64 * M)) $((8 * M))"
    "write -P 0x12 $((300 * M)) $((1 * M + 4 * K))"
    "write -P 0x00 $((100 * M)) $((2 * M))"
    "write -P 0x13 $((SIZE - 4 * K)) $((4 * K))")
qio "$IMG" qcow2 "${W1[@]}"

step "pullback init"
pullback init --repo "$REPO" --json >"$T/init.json"
cat "$T/init.json"
[ -f "$REPO/catalog.db" ] && [ -d "$REPO/store" ] || fail "repository layout"

step "full backup with checkpoint cp1 (bitmap cp1 added before the export starts)"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp1
start_qemu_nbd vda -r -f qcow2 "$IMG"
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri vda)" --checkpoint cp1 --json >"$T/b1.json"
cat "$T/b1.json"
stop_server vda
save_raw "$IMG" qcow2 "$T/p1.raw"
P1=$(json_get "$T/b1.json" .point)
pullback show --repo "$REPO" --point "$P1" --json >"$T/s1.json"
CS=$(json_get "$T/s1.json" .disks[0].chunk_size)
TOTAL=$(((SIZE + CS - 1) / CS))
note "point $P1, chunk size $CS, $TOTAL chunks"
[ "$(json_get "$T/b1.json" .mode)" = full ] || fail "mode of the first backup"
[ "$(json_get "$T/b1.json" .parent)" = null ] || fail "a full backup has no parent"
[ "$(json_get "$T/b1.json" .checkpoint)" = cp1 ] || fail "checkpoint"
[ "$(json_get "$T/b1.json" .since)" = null ] || fail "since of a full backup"
[ "$(json_get "$T/b1.json" .vm)" = vm1 ] || fail "vm"
[ "$(json_get "$T/b1.json" .disks[0].name)" = vda ] || fail "disk name"
[ "$(json_get "$T/b1.json" .disks[0].size)" = "$SIZE" ] || fail "disk size"
[ "$(json_get "$T/b1.json" .disks[0].chunks_total)" = "$TOTAL" ] || fail "chunks_total"
DATA1=$(chunks_touched "$CS" "${W1[@]}")
READ1=$(json_get "$T/b1.json" .disks[0].bytes_read)
[ "$READ1" -le $((DATA1 * CS)) ] || fail "full backup read $READ1 bytes; only $DATA1 chunks hold data"
[ "$READ1" -ge $((13 * M)) ] || fail "full backup read only $READ1 bytes of the 13 MiB of non-zero data"
[ "$(json_get "$T/b1.json" .disks[0].chunks_zero)" -ge $((TOTAL - DATA1)) ] || fail "chunks_zero of the full backup"
[ "$(json_get "$T/b1.json" .disks[0].chunks_kept)" = 0 ] || fail "a full backup keeps no chunk"
[ "$(json_get "$T/b1.json" .disks[0].digest)" = "$(json_get "$T/s1.json" .disks[0].digest)" ] ||
  fail "backup and show disagree on the digest"
check_counts "$T/b1.json" || fail "chunk counts of the full backup (2 MiB of zeros were written as data)"
[ "$(json_get "$T/s1.json" .disks[0].chunks_changed)" = "$TOTAL" ] ||
  fail "show: a full backup changes all $TOTAL chunks, not $(json_get "$T/s1.json" .disks[0].chunks_changed)"

step "writes after cp1: aligned, unaligned, crossing chunk boundaries, zero writes, discards"
W2=("write -P 0x21 $((64 * M)) $((256 * K))"
    "write -P 0x22 $((1 * M - 4 * K)) $((8 * K))"
    "write -P 0x23 $((200 * M + 100)) 1000"
    "write -P 0x24 $((3 * M + 1)) $((CS + 2))"
    "write -z $((65 * M)) $((512 * K))"
    "discard $((66 * M)) $((1 * M))"
    "write -z $((300 * M + 64 * K)) $((4 * K))"
    "write -s $T/r2 $((400 * M)) $((2 * M))")
qio "$IMG" qcow2 "${W2[@]}"
DIRTY2=$(chunks_touched "$CS" "${W2[@]}")

step "incremental since cp1 (bitmap cp1 exported), new checkpoint cp2"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp2
start_qemu_nbd vda -r -f qcow2 -B cp1 "$IMG"
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri vda)" \
  --since cp1 --bitmap vda=cp1 --checkpoint cp2 --json >"$T/b2.json"
cat "$T/b2.json"
stop_server vda
save_raw "$IMG" qcow2 "$T/p2.raw"
P2=$(json_get "$T/b2.json" .point)
[ "$(json_get "$T/b2.json" .mode)" = incremental ] || fail "mode of the incremental"
[ "$(json_get "$T/b2.json" .parent)" = "$P1" ] || fail "parent of point 2"
[ "$(json_get "$T/b2.json" .since)" = cp1 ] || fail "since"
[ "$(json_get "$T/b2.json" .checkpoint)" = cp2 ] || fail "checkpoint"
[ "$(json_get "$T/b2.json" .fallback_reason)" = null ] || fail "no fallback expected"
R=$(json_get "$T/b2.json" .disks[0].chunks_read) Z=$(json_get "$T/b2.json" .disks[0].chunks_zero)
KEPT=$(json_get "$T/b2.json" .disks[0].chunks_kept) READ2=$(json_get "$T/b2.json" .disks[0].bytes_read)
note "dirty chunks expected $DIRTY2: read $R, zero $Z, kept $KEPT, bytes_read $READ2"
check_counts "$T/b2.json" || fail "chunk counts of point 2"
# Only the dirty chunks were handled (read, or zero per base:allocation);
# every other one was kept from the parent without reading.
[ "$KEPT" = $((TOTAL - DIRTY2)) ] || fail "chunks_kept $KEPT, expected $((TOTAL - DIRTY2)) (the writes dirtied $DIRTY2 chunks)"
[ "$R" -le "$DIRTY2" ] && [ $((R + Z)) -ge "$DIRTY2" ] || fail "read $R + zero $Z chunks do not cover the $DIRTY2 dirty ones"
[ "$READ2" -le $((DIRTY2 * CS)) ] || fail "incremental read $READ2 bytes > $DIRTY2 dirty chunks"
[ "$READ2" -lt $((SIZE / 50)) ] || fail "incremental read $READ2 bytes: not much less than the disk"
[ "$READ2" -gt 0 ] || fail "incremental read nothing"

step "more writes after cp2, incremental since cp2 (checkpoint cp3); digest of the live export"
W3=("write -P 0x31 0 $((64 * K))"
    "write -z $((300 * M)) $((1 * M + 4 * K))"
    "write -P 0x32 $((SIZE - 8 * K)) $((8 * K))"
    "write -P 0x33 $((64 * M + 128 * K)) $((4 * K))")
qio "$IMG" qcow2 "${W3[@]}"
DIRTY3=$(chunks_touched "$CS" "${W3[@]}")
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp3
start_qemu_nbd vda -r -f qcow2 -B cp2 "$IMG"
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri vda)" \
  --since cp2 --bitmap vda=cp2 --checkpoint cp3 --json >"$T/b3.json"
cat "$T/b3.json"
pullback digest "$(nbd_uri vda)" --repo "$REPO" --json >"$T/d3.json"
stop_server vda
save_raw "$IMG" qcow2 "$T/p3.raw"
P3=$(json_get "$T/b3.json" .point)
[ "$(json_get "$T/b3.json" .parent)" = "$P2" ] || fail "parent of point 3"
[ "$(json_get "$T/b3.json" .mode)" = incremental ] || fail "mode of point 3"
KEPT=$(json_get "$T/b3.json" .disks[0].chunks_kept) R=$(json_get "$T/b3.json" .disks[0].chunks_read)
[ "$KEPT" = $((TOTAL - DIRTY3)) ] || fail "point 3 kept $KEPT chunks; the writes dirtied $DIRTY3 of $TOTAL"
[ "$R" -le "$DIRTY3" ] || fail "point 3 read $R chunks; the writes dirtied $DIRTY3"
check_counts "$T/b3.json" || fail "chunk counts of point 3 (a zero write left a chunk allocated but zero)"
[ "$(json_get "$T/d3.json" .digest)" = "$(json_get "$T/b3.json" .disks[0].digest)" ] ||
  fail "digest of the export != digest recorded for point 3"
[ "$(json_get "$T/d3.json" .size)" = "$SIZE" ] || fail "digest JSON size"
[ "$(json_get "$T/d3.json" .chunk_size)" = "$CS" ] || fail "digest JSON chunk_size"

step "list and show"
pullback list --repo "$REPO" --json >"$T/list.json"
[ "$(point_ids "$REPO")" = "$P1 $P2 $P3" ] || fail "list: $(cat "$T/list.json")"
[ "$(json_get "$T/list.json" ".points[id=$P2].parent")" = "$P1" ] || fail "list: parent of point 2"
[ "$(json_get "$T/list.json" ".points[id=$P3].checkpoint")" = cp3 ] || fail "list: checkpoint of point 3"
[ "$(json_get "$T/list.json" ".points[id=$P3].since")" = cp2 ] || fail "list: since of point 3"
[ "$(json_get "$T/list.json" ".points[id=$P1].disks[0].chunk_size")" = "$CS" ] || fail "list: chunk_size"
[ "$(point_ids "$REPO" vm1)" = "$P1 $P2 $P3" ] || fail "list --vm vm1"
[ -z "$(point_ids "$REPO" othervm)" ] || fail "list --vm othervm is not empty"
pullback list --repo "$REPO" | tee "$T/list.txt"
for c in cp1 cp2 cp3 vm1; do grep -q "$c" "$T/list.txt" || fail "list text lacks $c"; done
pullback show --repo "$REPO" --point latest --vm vm1 --json >"$T/show-latest.json"
[ "$(json_get "$T/show-latest.json" .id)" = "$P3" ] || fail "show latest"
[ "$(json_get "$T/show-latest.json" .chain)" = "[$P1,$P2,$P3]" ] || fail "chain of point 3"
pullback show --repo "$REPO" --point "$P2" --json >"$T/show2.json"
[ "$(json_get "$T/show2.json" .chain)" = "[$P1,$P2]" ] || fail "chain of point 2"
[ "$(json_get "$T/show2.json" .mode)" = incremental ] || fail "show: mode"
[ "$(json_get "$T/show2.json" .disks[0].chunks_changed)" = "$DIRTY2" ] ||
  fail "show: point 2 changed $DIRTY2 chunks, not $(json_get "$T/show2.json" .disks[0].chunks_changed)"
pullback show --repo "$REPO" --point "$P1" | tee "$T/show1.txt"
grep -q "$(json_get "$T/s1.json" .disks[0].digest)" "$T/show1.txt" || fail "show text lacks the digest"

step "restore every point to raw and qcow2 and compare"
check_restore "$REPO" "$P1" vm1 vda "$T/p1.raw"
check_restore "$REPO" "$P2" vm1 vda "$T/p2.raw"
check_restore "$REPO" "$P3" vm1 vda "$T/p3.raw"
check_patterns "$T/restore-vm1-vda-$P2.raw" raw "0x21 $((64 * M)) $((256 * K))" "0 $((65 * M)) $((512 * K))" \
  "0x11 $((65 * M + 512 * K)) $((512 * K))" "0 $((66 * M)) $((1 * M))" \
  "0x23 $((200 * M + 100)) 1000" "0x12 $((300 * M))  $((64 * K))"
check_patterns "$T/restore-vm1-vda-$P3.qcow2" qcow2 "0x31 0 $((64 * K))" "0 $((300 * M)) $((2 * M))" \
  "0x32 $((SIZE - 8 * K)) $((8 * K))"

step "verify"
pullback verify --repo "$REPO" --json >"$T/verify.json"
cat "$T/verify.json"
[ "$(json_get "$T/verify.json" .ok)" = true ] || fail "verify not ok"
[ "$(json_get "$T/verify.json" .points_checked)" = 3 ] || fail "verify points_checked"
[ "$(json_get "$T/verify.json" .catalog_ok)" = true ] || fail "verify catalog_ok"
[ "$(json_get "$T/verify.json" '.problems|length')" = 0 ] || fail "verify problems"
[ "$(json_get "$T/verify.json" .chunks_checked)" -gt 0 ] || fail "verify checked no chunk"
pullback verify --repo "$REPO" --point "$P2" --json >"$T/verify2.json"
[ "$(json_get "$T/verify2.json" .points_checked)" = 1 ] || fail "verify --point checks one point"
pullback verify --repo "$REPO"
echo PASS
