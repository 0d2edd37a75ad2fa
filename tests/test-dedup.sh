#!/bin/bash
# test-dedup.sh - the store deduplicates chunks within a disk, across
# backups and across VMs.
#
# Proves:
#  - a disk holding the same 1 MiB of random data twice stores it once
#    (chunks_new < chunks_read, bytes_new well under the data read);
#  - VM b, whose disk is a copy of VM a's, adds (almost) nothing to the
#    store: bytes_new < 1% of a's, no data chunk new; a second full backup
#    of a adds nothing either;
#  - a and b have the same digest and both restore exactly.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3

A=$T/a.qcow2 B=$T/b.qcow2 REPO=$T/repo SIZE=$((256 * M))

step "disk a: 256 MiB, 8 MiB random, the same 1 MiB of random data twice, patterns"
randfile "$T/r8" $((8 * M))
randfile "$T/r1" $((1 * M))
qemu-img create -q -f qcow2 "$A" "$SIZE"
qio "$A" qcow2 "write -s $T/r8 0 $((8 * M))" "write -s $T/r1 $((32 * M)) $((1 * M))" \
  "write -s $T/r1 $((64 * M)) $((1 * M))" "write -P 0x5a $((100 * M)) $((4 * M))"
cp "$A" "$B"
save_raw "$A" qcow2 "$T/a.raw"
pullback init --repo "$REPO"

backup() { # VM IMAGE OUT
  start_qemu_nbd "$1" -r -f qcow2 "$2"
  pullback backup --repo "$REPO" --vm "$1" --disk "vda=$(nbd_uri "$1")" --json >"$3"
  stop_server "$1"
  cat "$3"
}

step "backup of VM a"
backup a "$A" "$T/ba.json"
NEW_A=$(json_get "$T/ba.json" .disks[0].bytes_new)
READ_A=$(json_get "$T/ba.json" .disks[0].bytes_read)
CREAD_A=$(json_get "$T/ba.json" .disks[0].chunks_read)
CNEW_A=$(json_get "$T/ba.json" .disks[0].chunks_new)
note "a: read $READ_A bytes in $CREAD_A chunks, $CNEW_A new chunks, $NEW_A bytes new"
[ "$CNEW_A" -lt "$CREAD_A" ] || fail "the repeated 1 MiB was stored twice ($CNEW_A new of $CREAD_A read)"
[ "$NEW_A" -ge $((9 * M)) ] || fail "a: 9 MiB of random data cannot compress to $NEW_A bytes"
[ "$NEW_A" -lt $((READ_A - 512 * K)) ] || fail "a: bytes_new $NEW_A: no saving on the repeated data"

step "backup of VM b (a copy of a's disk)"
backup b "$B" "$T/bb.json"
NEW_B=$(json_get "$T/bb.json" .disks[0].bytes_new)
note "b: $NEW_B bytes new, $(json_get "$T/bb.json" .disks[0].chunks_new) chunks new"
[ $((NEW_B * 100)) -lt "$NEW_A" ] || fail "b added $NEW_B bytes: not < 1% of a's $NEW_A"
[ "$(json_get "$T/bb.json" .disks[0].chunks_new)" -le $((CREAD_A / 100)) ] || fail "b stored new data chunks"
[ "$(json_get "$T/bb.json" .disks[0].digest)" = "$(json_get "$T/ba.json" .disks[0].digest)" ] ||
  fail "same content, different digests"

step "a second full backup of a adds nothing"
backup a "$A" "$T/ba2.json"
NEW_A2=$(json_get "$T/ba2.json" .disks[0].bytes_new)
[ $((NEW_A2 * 100)) -lt "$NEW_A" ] || fail "second backup of a added $NEW_A2 bytes"
[ "$(json_get "$T/ba2.json" .mode)" = full ] || fail "second backup of a: mode"

step "restore both VMs"
PA=$(json_get "$T/ba.json" .point) PB=$(json_get "$T/bb.json" .point) PA2=$(json_get "$T/ba2.json" .point)
[ "$(point_ids "$REPO" a)" = "$PA $PA2" ] || fail "list --vm a"
[ "$(point_ids "$REPO" b)" = "$PB" ] || fail "list --vm b"
check_restore "$REPO" "$PA" a vda "$T/a.raw"
check_restore "$REPO" "$PB" b vda "$T/a.raw"
check_restore "$REPO" latest a vda "$T/a.raw"
pullback verify --repo "$REPO"
echo PASS
