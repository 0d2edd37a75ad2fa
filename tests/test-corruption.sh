#!/bin/bash
# test-corruption.sh - damaged and missing chunks are found by verify and by
# restore, named with the points that need them, and never produce a
# half-written image.
#
# Set-up: VM vm1 with points P1 (full), P2 (incremental writing chunk X =
# 0x22... and chunk Y = 0x33...), P3 (incremental overwriting X, keeping Y);
# VM vm2 with P4 (unrelated data).  Then one byte of X's chunk file is
# flipped and Y's chunk file is deleted (found under DIR/store/chunks by its
# id = SHA-256 of its content).
#
# Proves:
#  - verify exits 7, its JSON names X (needed by P2 only) and Y (needed by
#    P2 and P3) with the points; its text output names them too; verify of
#    an unaffected point alone passes;
#  - restore of P2 and of P3 exits 7 naming a damaged chunk, and leaves no
#    target (raw or qcow2) and no stray file behind;
#  - the unaffected points P1 and P4 still restore exactly;
#  - verify --sample: a seed reads the same share, every missing chunk is
#    found by any sample, a damaged one by the first sample that reads it;
#  - verify moves damaged copies to store/quarantine/; an incremental whose
#    parent lost unchanged chunks (Y, Z) reads them again (chunks_repaired),
#    and one the dirty bitmap missed is reported (bitmap_mismatches, a
#    warning) with the disk's true content recorded; a backup that meets
#    X's content stores it again; then verify passes and P1-P3 restore;
#  - an incremental on a parent whose point record is damaged is refused
#    [7], nothing recorded; with --fallback-full it is a full backup that
#    says why (fallback_reason, a warning) and restores exactly.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3

IMG=$T/disk.qcow2 IMG2=$T/disk2.qcow2 REPO=$T/repo SIZE=$((64 * M))

backup() { # IMAGE VM OUT [options]
  local img=$1 vm=$2 out=$3
  shift 3
  start_qemu_nbd vda -r -f qcow2 ${BITMAP:+-B "$BITMAP"} "$img"
  pullback backup --repo "$REPO" --vm "$vm" --disk "vda=$(nbd_uri vda)" "$@" --json >"$out"
  stop_server vda
}

step "points P1 (full), P2 (adds X and Y), P3 (overwrites X) of vm1; P4 of vm2"
pullback init --repo "$REPO"
randfile "$T/r1" $((4 * M))
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
qio "$IMG" qcow2 "write -s $T/r1 0 $((4 * M))" "write -P 0x11 $((8 * M)) $((1 * M))"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp1
BITMAP= backup "$IMG" vm1 "$T/b1.json" --checkpoint cp1
save_raw "$IMG" qcow2 "$T/p1.raw"
P1=$(json_get "$T/b1.json" .point)
pullback show --repo "$REPO" --point "$P1" --json >"$T/s1.json"
CS=$(json_get "$T/s1.json" .disks[0].chunk_size)

qio "$IMG" qcow2 "write -P 0x22 $((16 * M)) $CS" "write -P 0x33 $((20 * M)) $CS"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp2
BITMAP=cp1 backup "$IMG" vm1 "$T/b2.json" --since cp1 --bitmap vda=cp1 --checkpoint cp2
P2=$(json_get "$T/b2.json" .point)
save_raw "$IMG" qcow2 "$T/p2.raw"

qio "$IMG" qcow2 "write -P 0x44 $((16 * M)) $CS"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp3
BITMAP=cp2 backup "$IMG" vm1 "$T/b3.json" --since cp2 --bitmap vda=cp2 --checkpoint cp3
P3=$(json_get "$T/b3.json" .point)
save_raw "$IMG" qcow2 "$T/p3.raw"

randfile "$T/r2" $((2 * M))
qemu-img create -q -f qcow2 "$IMG2" "$SIZE"
qio "$IMG2" qcow2 "write -s $T/r2 $((32 * M)) $((2 * M))"
BITMAP= backup "$IMG2" vm2 "$T/b4.json"
save_raw "$IMG2" qcow2 "$T/p4.raw"
P4=$(json_get "$T/b4.json" .point)
pullback verify --repo "$REPO"

step "verify --sample: a share of the chunks read, the same share for a seed"
pullback verify --repo "$REPO" --sample 100 --json >"$T/vs100.json"
[ "$(json_get "$T/vs100.json" .chunks_not_read)" = 0 ] || fail "--sample 100 left chunks unread"
ALL=$(json_get "$T/vs100.json" .chunks_checked)
pullback verify --repo "$REPO" --sample 50 --seed 11 --json >"$T/vs50a.json"
pullback verify --repo "$REPO" --sample 50 --seed 11 --json >"$T/vs50b.json"
READ=$(json_get "$T/vs50a.json" .chunks_checked) UNREAD=$(json_get "$T/vs50a.json" .chunks_not_read)
[ $((READ + UNREAD)) = "$ALL" ] || fail "sample: $READ read + $UNREAD unread != $ALL"
[ "$UNREAD" -gt 0 ] && [ "$READ" -lt "$ALL" ] || fail "--sample 50 read everything"
[ "$(json_get "$T/vs50b.json" .chunks_checked)" = "$READ" ] || fail "the same seed read another share"
[ "$(json_get "$T/vs50a.json" .seed)" = 11 ] || fail "seed not reported"
pullback verify --repo "$REPO" --sample 10 >"$T/vs10.txt"
grep -q "^sample of 10% (seed [0-9]*): [0-9]* more chunks found present, not read$" "$T/vs10.txt" ||
  fail "sample text: $(cat "$T/vs10.txt")"
for bad in 0 101 -5 abc 10x ""; do
  expect_fail 2 pullback verify --repo "$REPO" --sample "$bad"
  expect_err "--sample"
done
expect_fail 2 pullback verify --repo "$REPO" --seed 5
expect_err "--seed needs --sample"
expect_fail 2 pullback verify --repo "$REPO" --sample 5 --seed -1

step "damage: flip one byte of chunk X, delete chunk Y"
pattern_id() { "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(bytes([int(sys.argv[1], 16)]) * int(sys.argv[2])).hexdigest())' "$1" "$2"; }
X=$(pattern_id 0x22 "$CS") Y=$(pattern_id 0x33 "$CS")
find "$REPO/store/chunks" -type f >"$T/chunkfiles"
note "$(wc -l <"$T/chunkfiles") chunk files"
XF=$(grep "/$X" "$T/chunkfiles" | head -n 1) YF=$(grep "/$Y" "$T/chunkfiles" | head -n 1)
[ -n "$XF" ] && [ -n "$YF" ] || fail "chunk files for X=$X / Y=$Y not found under $REPO/store/chunks"
note "X: $XF"
note "Y: $YF"
"$PYTHON" - "$XF" <<'EOF'
import os, sys
path = sys.argv[1]
size = os.path.getsize(path)
with open(path, "r+b") as f:
    f.seek(size // 2)
    b = f.read(1)
    f.seek(size // 2)
    f.write(bytes([b[0] ^ 0xff]))
EOF
rm -f "$YF"

step "verify finds both, with the points that need them [7]"
expect_fail 7 pullback verify --repo "$REPO" --json
cp "$LAST_OUT" "$T/verify.json"
cat "$T/verify.json"
[ "$(json_get "$T/verify.json" .ok)" = false ] || fail "verify says ok"
[ "$(json_get "$T/verify.json" '.problems|length')" = 2 ] || fail "expected 2 problems"
[ "$(json_get "$T/verify.json" ".problems[chunk=$X].points")" = "[$P2]" ] || fail "chunk X: points"
[ "$(json_get "$T/verify.json" ".problems[chunk=$Y].points")" = "[$P2,$P3]" ] || fail "chunk Y: points"
[ "$(json_get "$T/verify.json" ".problems[chunk=$Y].what")" = missing ] || fail "chunk Y: what is not \"missing\""
[ "$(json_get "$T/verify.json" ".problems[chunk=$X].what")" = "checksum mismatch" ] ||
  fail "chunk X: what is not \"checksum mismatch\""
[ "$(json_get "$T/verify.json" ".problems[chunk=$X].quarantined")" = true ] || fail "X not moved aside"
[ "$(json_get "$T/verify.json" ".problems[chunk=$Y].quarantined")" = false ] || fail "Y quarantined"
[ -f "$REPO/store/quarantine/$X" ] && [ ! -e "$XF" ] || fail "X's damaged copy is not in quarantine/"
[ "$(json_get "$T/verify.json" .catalog_ok)" = true ] || fail "catalog_ok"
expect_fail 7 pullback verify --repo "$REPO"
cat "$LAST_OUT" "$LAST_ERR" >"$T/verify.txt"
grep -qx "chunk $X: missing (an earlier verify moved its damaged copy to the store's quarantine/); needed by point $P2" "$T/verify.txt" &&
  grep -qx "chunk $Y: missing; needed by points $P2, $P3" "$T/verify.txt" ||
  fail "verify text does not list both chunks as docs/CLI.md shows: $(cat "$T/verify.txt")"
expect_fail 7 pullback verify --repo "$REPO" --point "$P3" --json
[ "$(json_get "$LAST_OUT" '.problems|length')" = 1 ] || fail "verify --point P3: expected only Y"
pullback verify --repo "$REPO" --point "$P1"
pullback verify --repo "$REPO" --point "$P4"

step "restore of damaged points fails [7] and leaves nothing behind"
mkdir "$T/out"
for p in "$P2" "$P3"; do
  for fmt in raw qcow2; do
    expect_fail 7 pullback restore --repo "$REPO" --point "$p" --vm vm1 --disk vda --to "$T/out/r.$fmt" --format "$fmt"
    grep -q "$Y\|$X" "$LAST_ERR" || fail "restore error does not name the chunk: $(cat "$LAST_ERR")"
    [ -z "$(ls -A "$T/out")" ] || fail "restore of point $p ($fmt) left files: $(ls -A "$T/out")"
  done
done
grep -q "$Y" "$LAST_ERR" || fail "restore of P3 must name Y"

step "unaffected points still restore exactly"
check_restore "$REPO" "$P1" vm1 vda "$T/p1.raw"
check_restore "$REPO" "$P4" vm2 vda "$T/p4.raw"

step "a sample finds a damaged chunk when it reads it, a missing one always"
Z=$(pattern_id 0x11 "$CS")
ZF=$(grep "/$Z" "$T/chunkfiles" | head -n 1)
[ -n "$ZF" ] || fail "chunk file for Z=$Z not found"
"$PYTHON" -c 'import os, sys; n = os.path.getsize(sys.argv[1]) // 2; f = open(sys.argv[1], "r+b"); f.seek(n); b = f.read(1); f.seek(n); f.write(bytes([b[0] ^ 1]))' "$ZF"
missed=0 found=
for seed in $(seq 1 64); do
  # X and Y are not needed by P1: a problem here can only be Z.
  rc=0
  pullback verify --repo "$REPO" --point "$P1" --sample 50 --seed "$seed" --json >"$T/vz.json" || rc=$?
  if [ "$rc" = 7 ]; then found=$seed; break; fi
  [ "$rc" = 0 ] || fail "verify --sample exit $rc"
  missed=$((missed + 1))
done
[ -n "$found" ] || fail "64 samples of 50% never read the damaged chunk Z"
[ "$(json_get "$T/vz.json" ".problems[chunk=$Z].what")" = "checksum mismatch" ] || fail "Z: $(cat "$T/vz.json")"
note "Z found by seed $found after $missed samples that did not read it"
expect_fail 7 pullback verify --repo "$REPO" --point "$P3" --sample 1 --seed 3 --json
[ "$(json_get "$LAST_OUT" ".problems[chunk=$Y].what")" = missing ] || fail "a 1% sample missed the missing chunk Y"

step "an incremental re-reads unchanged chunks its parent lost (Y, Z), and names a bitmap that missed a write"
# The first chunk of Z's megabyte is rewritten behind the bitmap's back
# (bitmap disabled): the bitmap calls it unchanged, the store lost it, so
# it is read again and found different.
qemu-img bitmap --disable -f qcow2 "$IMG" cp3
qio "$IMG" qcow2 "write -P 0x77 $((8 * M)) $CS"
qemu-img bitmap --enable -f qcow2 "$IMG" cp3
qio "$IMG" qcow2 "write -P 0x66 $((30 * M)) $CS"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp4
start_qemu_nbd vda -r -f qcow2 -B cp3 "$IMG"
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri vda)" --since cp3 --bitmap vda=cp3 \
  --checkpoint cp4 --json >"$T/b5.json" 2>"$T/b5.err"
stop_server vda
P5=$(json_get "$T/b5.json" .point)
[ "$(json_get "$T/b5.json" .mode)" = incremental ] || fail "P5 not incremental"
[ "$(json_get "$T/b5.json" .disks[0].chunks_repaired)" = 2 ] ||
  fail "chunks_repaired $(json_get "$T/b5.json" .disks[0].chunks_repaired), expected 2 (Y and Z)"
[ "$(json_get "$T/b5.json" .disks[0].bitmap_mismatches)" = 1 ] || fail "bitmap_mismatches"
grep -q "warning: disk 'vda': 1 chunk the dirty bitmap called unchanged differ" "$T/b5.err" ||
  fail "no warning about the bitmap: $(cat "$T/b5.err")"
save_raw "$IMG" qcow2 "$T/p5.raw"
check_restore "$REPO" "$P5" vm1 vda "$T/p5.raw"
check_restore "$REPO" "$P3" vm1 vda "$T/p3.raw"
expect_fail 7 pullback verify --repo "$REPO" --json
[ "$(json_get "$LAST_OUT" '.problems|length')" = 1 ] && [ "$(json_get "$LAST_OUT" ".problems[chunk=$X].points")" = "[$P2]" ] ||
  fail "only X (needed by P2) should still be missing: $(cat "$LAST_OUT")"

step "self-healing: a backup that meets X's content writes a good copy"
qemu-img create -q -f qcow2 "$T/heal.qcow2" "$SIZE"
qio "$T/heal.qcow2" qcow2 "write -P 0x22 0 $CS" "write -P 0x33 $CS $CS" "write -P 0x11 $((2 * CS)) $CS"
BITMAP= backup "$T/heal.qcow2" vm3 "$T/heal.json"
[ "$(json_get "$T/heal.json" .disks[0].chunks_new)" = 1 ] ||
  fail "the healing backup stored $(json_get "$T/heal.json" .disks[0].chunks_new) chunks, expected X only"
pullback verify --repo "$REPO" --json >"$T/healed.json" || fail "verify after healing: $(cat "$T/healed.json")"
check_restore "$REPO" "$P1" vm1 vda "$T/p1.raw"
check_restore "$REPO" "$P2" vm1 vda "$T/p2.raw"

step "a damaged parent is not built on: refused [7], or a full backup with --fallback-full"
REC=$REPO/store/points/$(printf %010d "$P5")
"$PYTHON" -c 'import os, sys; n = os.path.getsize(sys.argv[1]) // 2; f = open(sys.argv[1], "r+b"); f.seek(n); b = f.read(1); f.seek(n); f.write(bytes([b[0] ^ 8]))' "$REC"
BEFORE=$(point_ids "$REPO")
start_qemu_nbd vda -r -f qcow2 -B cp4 "$IMG"
expect_fail 7 pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri vda)" --since cp4 --bitmap vda=cp4
expect_err "parent point $P5 (checkpoint cp4) is damaged"
[ "$(point_ids "$REPO")" = "$BEFORE" ] || fail "a refused incremental recorded a point"
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri vda)" --since cp4 --bitmap vda=cp4 \
  --fallback-full --json >"$T/b6.json" 2>"$T/b6.err"
stop_server vda
[ "$(json_get "$T/b6.json" .mode)" = full ] || fail "--fallback-full did not take a full backup"
json_get "$T/b6.json" .fallback_reason | grep -q "is damaged" || fail "fallback_reason: $(cat "$T/b6.json")"
grep -q "warning: .*damaged.*took a full backup instead" "$T/b6.err" || fail "no warning: $(cat "$T/b6.err")"
check_restore "$REPO" "$(json_get "$T/b6.json" .point)" vm1 vda "$T/p5.raw"
echo PASS
