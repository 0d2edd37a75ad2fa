#!/bin/bash
# test-upgrade.sh - a repository written by pullback before space
# management (catalog schema version 1, tests/data/v1-repo.tar.gz, made by
# tests/data/make-v1-repo.sh) is upgraded in place when opened.
#
# Proves:
#  - opening it upgrades the catalog to version 2 and computes the reference
#    counts (meta refs_valid = 1), with the integrity check passing;
#  - every old point still restores bit-exact (raw and qcow2) and verifies;
#  - the counts are right: nothing is garbage straight after the upgrade
#    (gc --dry-run deletes nothing), and after forgetting the full point and
#    gc the other points still restore exactly while gc did free something;
#  - an incremental --since the last old checkpoint works on the upgraded
#    repository and restores exactly.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd sqlite3 python3

cd "$T"
tar xzf "$TESTS_SRCDIR/data/v1-repo.tar.gz"
REPO=$T/repo
[ "$(sqlite3 "$REPO/catalog.db" "SELECT value FROM meta WHERE key='schema_version'")" = 1 ] ||
  fail "fixture is not a version 1 catalog"

step "open: upgrade to version 2"
[ "$(point_ids "$REPO")" = "1 2 3" ] || fail "points after upgrade: $(point_ids "$REPO")"
[ "$(sqlite3 "$REPO/catalog.db" "SELECT value FROM meta WHERE key='schema_version'")" = 2 ] ||
  fail "schema_version not 2 after open"
[ "$(sqlite3 "$REPO/catalog.db" "SELECT value FROM meta WHERE key='refs_valid'")" = 1 ] ||
  fail "reference counts not computed"
[ "$(sqlite3 "$REPO/catalog.db" "SELECT count (*) FROM map_node WHERE refs = 0")" = 0 ] ||
  fail "map nodes without references after the upgrade"
pullback verify --repo "$REPO"

step "every old point restores exactly"
# The fixture holds only the checksums of the disk at each point.
for i in 1 2 3; do
  pullback restore --repo "$REPO" --point "$i" --vm vm1 --disk vda --to "$T/p$i.raw"
  want=$(sed -n "s/  p$i.raw\$//p" sums)
  [ "$(sha256sum <"$T/p$i.raw" | cut -d' ' -f1)" = "$want" ] || fail "point $i differs after upgrade"
done

step "the counts are right: nothing is garbage, forget + gc keep the others"
pullback gc --repo "$REPO" --dry-run --json >gc0.json
[ "$(json_get gc0.json .chunks_deleted)" = 0 ] && [ "$(json_get gc0.json .nodes_deleted)" = 0 ] ||
  fail "gc would delete live data after the upgrade: $(cat gc0.json)"
pullback forget --repo "$REPO" --point 1 --gc --json >f1.json
[ "$(json_get f1.json .removed)" = "[1]" ] || fail "forget: $(cat f1.json)"
[ "$(json_get f1.json .gc.nodes_deleted)" -gt 0 ] || fail "gc freed no map node of point 1"
for i in 2 3; do
  check_restore "$REPO" "$i" vm1 vda "$T/p$i.raw"
done
pullback verify --repo "$REPO"

step "an incremental since the old checkpoint cp3"
qemu-io -f qcow2 -c "write -P 0x66 1M 64K" d.qcow2 >/dev/null
save_raw d.qcow2 qcow2 "$T/p4.raw"
start_qemu_nbd d -r -f qcow2 -B cp2 d.qcow2
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri d)" \
  --since cp3 --bitmap vda=cp2 --checkpoint cp4 --json >b4.json
stop_server d
[ "$(json_get b4.json .mode)" = incremental ] || fail "not incremental: $(cat b4.json)"
check_restore "$REPO" latest vm1 vda "$T/p4.raw"
pullback verify --repo "$REPO"
echo PASS
