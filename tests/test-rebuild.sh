#!/bin/bash
# test-rebuild.sh - the catalog is an index, not the only copy: `pullback
# catalog rebuild` makes it again from the store alone.
#
# Set-up: VM a with P1 (full, checkpoint cp1), P2 (incremental since cp1,
# cp2), P4 (incremental since cp2, cp3); VM b with P3 (full, chunk 0 =
# 0x33..., a chunk no other point has) and P5 (incremental on P3 that
# overwrites chunk 0 with 0x55...).  P2 is protected.
#
# Proves:
#  - with catalog.db (and its WAL) deleted, commands refuse the repository
#    [3]; rebuild brings back every point with its id, VM, mode, parent,
#    checkpoints and disks (list and show JSON equal the originals except
#    "protected"), each restores bit-exact to raw and qcow2, verify passes,
#    gc --dry-run frees nothing, and the next incremental --since cp3 works
#    with a new, higher id;
#  - a catalog overwritten with garbage is rebuilt without --force; an
#    intact one is refused [2] ("intact") and left alone, --force rebuilds
#    it and the old file is kept (catalog.db.old-*), still an openable
#    SQLite database; a stale catalog.db.rebuild is replaced;
#  - a chunk missing from the store: its point (P3) is named and left out
#    [7], the other points are rebuilt, and P5's parent link is dropped
#    (parents_dropped 1) while P5 still restores bit-exact; a point record
#    with a flipped bit is named and left out; ids are never reused: the
#    next backup's id is above every record's;
#  - a live writer lease in the old catalog refuses a rebuild [10];
#  - an encrypted repository rebuilds with its key, and without it is
#    refused [13].
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3 sqlite3

REPO=$T/repo A=$T/a.qcow2 B=$T/b.qcow2 SIZE=$((16 * M))

backup() { # IMG VM OUT [options]
  local img=$1 vm=$2 out=$3
  shift 3
  start_qemu_nbd vda -r -f qcow2 ${BITMAP:+-B "$BITMAP"} "$img"
  pullback backup --repo "$REPO" --vm "$vm" --disk "vda=$(nbd_uri vda)" "$@" --json >"$out"
  stop_server vda
  json_get "$out" .point
}

# The catalog's view of every point, without what the store does not keep.
views() { # OUT
  pullback list --repo "$REPO" --json >"$T/l.json"
  json_py "$T/l.json" 'json.dumps([{k: v for k, v in p.items() if k != "protected"} for p in d["points"]], sort_keys=True)' >"$1"
  for p in $(point_ids "$REPO"); do
    pullback show --repo "$REPO" --point "$p" --json >"$T/s.json"
    json_py "$T/s.json" 'json.dumps({k: v for k, v in d.items() if k != "protected"}, sort_keys=True)' >>"$1"
  done
}

restore_all() {
  check_restore "$REPO" "$P1" a vda "$T/p1.raw"
  check_restore "$REPO" "$P2" a vda "$T/p2.raw"
  check_restore "$REPO" "$P4" a vda "$T/p4.raw"
  check_restore "$REPO" "$P5" b vda "$T/p5.raw"
}

rebuild() { pullback catalog rebuild --repo "$REPO" --json "$@" >"$T/rb.json"; }

step "a repository with two VMs, chains and a protected point"
pullback init --repo "$REPO" >/dev/null
qemu-img create -q -f qcow2 "$A" "$SIZE"
qemu-img create -q -f qcow2 "$B" "$SIZE"
randfile "$T/r" $((2 * M))
qio "$A" qcow2 "write -s $T/r 0 $((2 * M))" "write -P 0x11 $((6 * M)) $((1 * M))"
qio "$B" qcow2 "write -P 0x33 0 $((256 * K))" "write -P 0x44 $((4 * M)) $((512 * K))"
qemu-img bitmap --add --enable -f qcow2 "$A" cp1
P1=$(BITMAP= backup "$A" a "$T/b1.json" --checkpoint cp1)
save_raw "$A" qcow2 "$T/p1.raw"
qio "$A" qcow2 "write -P 0x22 $((1 * M)) $((256 * K))"
qemu-img bitmap --add --enable -f qcow2 "$A" cp2
P2=$(BITMAP=cp1 backup "$A" a "$T/b2.json" --since cp1 --bitmap vda=cp1 --checkpoint cp2)
save_raw "$A" qcow2 "$T/p2.raw"
qemu-img bitmap --add --enable -f qcow2 "$B" cb1
P3=$(BITMAP= backup "$B" b "$T/b3.json" --checkpoint cb1)
save_raw "$B" qcow2 "$T/p3.raw"
qio "$A" qcow2 "write -P 0x66 $((10 * M)) $((512 * K))"
qemu-img bitmap --add --enable -f qcow2 "$A" cp3
P4=$(BITMAP=cp2 backup "$A" a "$T/b4.json" --since cp2 --bitmap vda=cp2 --checkpoint cp3)
save_raw "$A" qcow2 "$T/p4.raw"
qio "$B" qcow2 "write -P 0x55 0 $((256 * K))"
P5=$(BITMAP=cb1 backup "$B" b "$T/b5.json" --since cb1 --bitmap vda=cb1)
save_raw "$B" qcow2 "$T/p5.raw"
pullback protect --repo "$REPO" --point "$P2" >/dev/null
views "$T/orig.view"
note "points: $(point_ids "$REPO")"

step "catalog deleted: refused, then rebuilt from the store"
rm -f "$REPO/catalog.db" "$REPO/catalog.db-wal" "$REPO/catalog.db-shm"
expect_fail 3 pullback list --repo "$REPO"
rebuild
[ "$(json_get "$T/rb.json" .ok)" = true ] || fail "rebuild not ok"
[ "$(json_get "$T/rb.json" .records)" = 5 ] || fail "records: $(json_get "$T/rb.json" .records)"
[ "$(json_get "$T/rb.json" .points)" = 5 ] || fail "points: $(json_get "$T/rb.json" .points)"
[ "$(json_get "$T/rb.json" .old_catalog)" = null ] || fail "an old catalog was kept from nothing"
views "$T/rebuilt.view"
diff "$T/orig.view" "$T/rebuilt.view" || fail "the rebuilt catalog differs from the original"
restore_all
check_restore "$REPO" "$P3" b vda "$T/p3.raw"
pullback verify --repo "$REPO" --json >"$T/v.json" || fail "verify after rebuild"
pullback gc --repo "$REPO" --dry-run --json >"$T/gc.json"
[ "$(json_get "$T/gc.json" .chunks_deleted)" = 0 ] || fail "gc would free chunks after a rebuild"
[ "$(json_get "$T/gc.json" .nodes_deleted)" = 0 ] || fail "gc would free map nodes after a rebuild"

step "the next incremental after a rebuild"
qio "$A" qcow2 "write -P 0x77 $((3 * M)) $((256 * K))"
P6=$(BITMAP=cp3 backup "$A" a "$T/b6.json" --since cp3 --bitmap vda=cp3)
[ "$(json_get "$T/b6.json" .mode)" = incremental ] || fail "not incremental after rebuild"
[ "$P6" -gt "$P5" ] || fail "new point id $P6 not above $P5"
save_raw "$A" qcow2 "$T/p6.raw"
check_restore "$REPO" "$P6" a vda "$T/p6.raw"

step "an intact catalog is refused without --force, kept with it"
cp "$REPO/catalog.db" "$T/cat.before"
expect_fail 2 pullback catalog rebuild --repo "$REPO"
expect_err "intact"
cmp -s "$REPO/catalog.db" "$T/cat.before" || fail "a refused rebuild changed catalog.db"
echo junk >"$REPO/catalog.db.rebuild"
rebuild --force
OLD=$(json_get "$T/rb.json" .old_catalog)
[ -f "$OLD" ] || fail "old catalog not kept ($OLD)"
[ ! -e "$REPO/catalog.db.rebuild" ] || fail "catalog.db.rebuild left behind"
[ "$(sqlite3 "$OLD" 'SELECT count(*) FROM point')" = 6 ] || fail "the kept old catalog is not readable"
[ "$(json_get "$T/rb.json" .points)" = 6 ] || fail "--force rebuild: $(json_get "$T/rb.json" .points) points"

step "a catalog overwritten with garbage is rebuilt without --force"
dd if=/dev/urandom of="$REPO/catalog.db" bs=4096 seek=1 count=4 conv=notrunc status=none
rebuild
[ "$(json_get "$T/rb.json" .points)" = 6 ] || fail "garbage catalog: $(json_get "$T/rb.json" .points) points"
restore_all

step "a live writer lease refuses a rebuild"
start=$(awk '{print $22}' /proc/$$/stat)
sqlite3 "$REPO/catalog.db" "INSERT INTO lease (vm, host, boot_id, pid, pid_start, started)
  VALUES ('a', '$(uname -n)', '$(cat /proc/sys/kernel/random/boot_id)', $$, $start, 0)"
expect_fail 10 pullback catalog rebuild --repo "$REPO" --force
expect_err "backup is running"
sqlite3 "$REPO/catalog.db" "DELETE FROM lease"

step "a missing chunk: its point is named and left out, its child loses the link"
ID33=$(head -c $((256 * K)) "$T/p3.raw" | sha256sum | cut -c1-64)
[ -f "$REPO/store/chunks/${ID33:0:2}/$ID33" ] || fail "chunk 0x33 not found in the store"
mv "$REPO/store/chunks/${ID33:0:2}/$ID33" "$T/chunk33"
expect_fail 7 pullback catalog rebuild --repo "$REPO" --force --json
cp "$LAST_OUT" "$T/rb.json"
json_py "$T/rb.json" '[s["point"] for s in d["skipped"]]' | grep -qx "\[$P3\]" ||
  fail "skipped: $(cat "$T/rb.json")"
json_py "$T/rb.json" 'd["skipped"][0]["why"]' | grep -q missing || fail "why: $(cat "$T/rb.json")"
[ "$(json_get "$T/rb.json" .parents_dropped)" = 1 ] || fail "parents_dropped"
[ "$(point_ids "$REPO")" = "$P1 $P2 $P4 $P5 $P6" ] || fail "points after: $(point_ids "$REPO")"
pullback show --repo "$REPO" --point "$P5" --json >"$T/s5.json"
[ "$(json_get "$T/s5.json" .parent)" = null ] || fail "P5 keeps a parent that was not rebuilt"
check_restore "$REPO" "$P5" b vda "$T/p5.raw"
mv "$T/chunk33" "$REPO/store/chunks/${ID33:0:2}/$ID33"

step "a damaged point record is named and left out; ids are not reused"
REC=$REPO/store/points/$(printf %010d "$P4")
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(60); b = f.read(1); f.seek(60); f.write(bytes([b[0] ^ 4]))' "$REC"
expect_fail 7 pullback catalog rebuild --repo "$REPO" --force --json
expect_err "1 point could not be rebuilt"
cp "$LAST_OUT" "$T/rb.json"
json_py "$T/rb.json" '[s["point"] for s in d["skipped"]]' | grep -qx "\[$P4\]" || fail "skipped: $(cat "$T/rb.json")"
P7=$(BITMAP= backup "$B" b "$T/b7.json")
[ "$P7" -gt "$P6" ] || fail "new point id $P7 not above $P6 (ids reused)"

step "an encrypted repository: rebuilt with its key, refused without"
pullback key create --no-passphrase "$T/k" >/dev/null 2>&1
EREPO=$T/erepo
pullback init --repo "$EREPO" --encrypt --key-file "$T/k" >/dev/null
REPO=$EREPO
E1=$(PULLBACK_KEY_FILE=$T/k BITMAP= backup "$A" a "$T/e1.json")
rm -f "$EREPO/catalog.db"*
expect_fail 13 pullback catalog rebuild --repo "$EREPO"
PULLBACK_KEY_FILE=$T/k rebuild
[ "$(json_get "$T/rb.json" .points)" = 1 ] || fail "encrypted rebuild"
PULLBACK_KEY_FILE=$T/k check_restore "$EREPO" "$E1" a vda "$T/p6.raw"
PULLBACK_KEY_FILE=$T/k pullback verify --repo "$EREPO" >/dev/null

step "ok"
