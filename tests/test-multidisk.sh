#!/bin/bash
# test-multidisk.sh - one point holds all disks of a VM.
#
# Proves:
#  - a full backup of a VM with two disks records one point with both disks,
#    each with its own size and digest (show, list);
#  - an incremental of both disks through their own bitmaps keeps exactly the
#    clean chunks of each, and every disk of every point restores exactly;
#  - a disk added to the VM after the parent point (vdc) is read in full
#    within an incremental point, while the other disks stay incremental;
#  - identical content on two disks of one point is stored once.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3

REPO=$T/repo CS=$((256 * K))
A=$T/vda.qcow2 B=$T/vdb.qcow2 C=$T/vdc.qcow2

serve_all() { # BITMAP-or-empty DISKS...
  local bm=$1 d
  shift
  for d in "$@"; do
    start_qemu_nbd "$d" -r -f qcow2 ${bm:+-B "$bm"} "$T/$d.qcow2"
  done
}
stop_all() { local d; for d in "$@"; do stop_server "$d"; done; }

step "two disks: vda 128 MiB, vdb 96 MiB (the same 2 MiB of random data on both)"
randfile "$T/r2" $((2 * M))
qemu-img create -q -f qcow2 "$A" $((128 * M))
qemu-img create -q -f qcow2 "$B" $((96 * M))
qio "$A" qcow2 "write -s $T/r2 0 $((2 * M))" "write -P 0x11 $((64 * M)) $((1 * M))"
qio "$B" qcow2 "write -s $T/r2 $((8 * M)) $((2 * M))" "write -P 0x22 $((90 * M)) 300k"
pullback init --repo "$REPO"

step "full backup of both disks, checkpoint cp1"
serve_all "" vda vdb
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri vda)" --disk "vdb=$(nbd_uri vdb)" \
  --checkpoint cp1 --json >"$T/b1.json"
stop_all vda vdb
cat "$T/b1.json"
P1=$(json_get "$T/b1.json" .point)
[ "$(json_get "$T/b1.json" '.disks[name=vda].size')" = $((128 * M)) ] || fail "vda size"
[ "$(json_get "$T/b1.json" '.disks[name=vdb].size')" = $((96 * M)) ] || fail "vdb size"
check_counts "$T/b1.json" || fail "chunk counts of point 1"
NEW_B=$(json_get "$T/b1.json" '.disks[name=vdb].chunks_new')
READ_B=$(json_get "$T/b1.json" '.disks[name=vdb].chunks_read')
[ "$NEW_B" -lt "$READ_B" ] || fail "vdb's copy of vda's random data was stored again ($NEW_B new of $READ_B read)"
save_raw "$A" qcow2 "$T/a1.raw"; save_raw "$B" qcow2 "$T/b1.raw"
for d in vda vdb; do qemu-img bitmap --add --enable -f qcow2 "$T/$d.qcow2" cp1; done

step "writes on both disks; a new disk vdc; incremental since cp1 with checkpoint cp2"
qio "$A" qcow2 "write -P 0x33 $((10 * M)) 4k"
qio "$B" qcow2 "write -P 0x44 $((50 * M)) $((1 * M))" "write -z $((8 * M)) $((1 * M))"
qemu-img create -q -f qcow2 "$C" $((32 * M))
qio "$C" qcow2 "write -P 0x55 $((1 * M)) $((1 * M))"
qemu-img bitmap --add --enable -f qcow2 "$C" cp1
serve_all cp1 vda vdb vdc
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri vda)" --disk "vdb=$(nbd_uri vdb)" \
  --disk "vdc=$(nbd_uri vdc)" --since cp1 --bitmap vda=cp1 --bitmap vdb=cp1 --bitmap vdc=cp1 \
  --checkpoint cp2 --json >"$T/b2.json"
stop_all vda vdb vdc
cat "$T/b2.json"
P2=$(json_get "$T/b2.json" .point)
[ "$(json_get "$T/b2.json" .mode)" = incremental ] || fail "point 2 is not incremental"
[ "$(json_get "$T/b2.json" .parent)" = "$P1" ] || fail "parent of point 2"
check_counts "$T/b2.json" || fail "chunk counts of point 2"
[ "$(json_get "$T/b2.json" '.disks[name=vda].chunks_kept')" = $((128 * M / CS - 1)) ] ||
  fail "vda: one chunk was dirty, the others must be kept"
[ "$(json_get "$T/b2.json" '.disks[name=vdb].chunks_kept')" = $((96 * M / CS - 8)) ] ||
  fail "vdb: 8 chunks were dirty, the others must be kept"
[ "$(json_get "$T/b2.json" '.disks[name=vdc].chunks_kept')" = 0 ] ||
  fail "vdc is new since point 1: nothing can be kept"
save_raw "$A" qcow2 "$T/a2.raw"; save_raw "$B" qcow2 "$T/b2.raw"; save_raw "$C" qcow2 "$T/c2.raw"

step "list and show name every disk"
pullback list --repo "$REPO" --vm vm1 --json >"$T/list.json"
[ "$(json_py "$T/list.json" 'len(d["points"])')" = 2 ] || fail "list: two points"
[ "$(json_py "$T/list.json" '",".join(x["name"] for x in d["points"][1]["disks"])')" = vda,vdb,vdc ] ||
  fail "list: disks of point 2"

step "every disk of every point restores exactly"
check_restore "$REPO" "$P1" vm1 vda "$T/a1.raw"
check_restore "$REPO" "$P1" vm1 vdb "$T/b1.raw"
check_restore "$REPO" "$P2" vm1 vda "$T/a2.raw"
check_restore "$REPO" "$P2" vm1 vdb "$T/b2.raw"
check_restore "$REPO" "$P2" vm1 vdc "$T/c2.raw"
expect_fail 9 pullback restore --repo "$REPO" --point "$P1" --vm vm1 --disk vdc --to "$T/none.raw"
expect_err "no disk 'vdc'"
pullback verify --repo "$REPO" >/dev/null
