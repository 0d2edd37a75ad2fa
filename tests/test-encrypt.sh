#!/bin/bash
# test-encrypt.sh - encrypted repositories, end to end through the CLI.
#
# Set-up: a disk holding a text marker many times, random data, zeros; key
# files made with `pullback key create` (passphrase from a file, and one
# without a passphrase); a repository made with `init --encrypt`.
#
# Proves:
#  - full and incremental (dirty bitmap) backups of an encrypted repository
#    restore bit-exact to raw and qcow2, and verify passes;
#  - the repository holds no plaintext: neither the disk's marker nor the
#    point's VM name appear in any store file, the catalog holds no plain
#    SHA-256 of a data chunk, the point digest is not the plain one, and
#    the master key (read off the paper copy), the passphrase and key bytes
#    appear nowhere in the repository nor in any output;
#  - dedup holds across VMs (a copy of the disk adds no data chunk);
#  - wrong passphrase, another key file, no key, a key for a plain
#    repository, an unwrapped key file readable by others: exit 13 with a
#    clear message, nothing written;
#  - a chunk copied over another, a flipped bit in a chunk or in a point
#    record, and a catalog row pointing a disk at another point's map tree
#    are refused by verify and restore (exit 7), no target left behind;
#  - change-passphrase keeps the key (the repository opens with the new
#    passphrase, not the old one); a paper copy typed back (with case and
#    spaces changed) opens the repository; a typo is named by its line;
#  - the passphrase and key are not in /proc/PID/cmdline of a running backup.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd nbdkit python3 sqlite3

IMG=$T/disk.qcow2 REPO=$T/repo KEY=$T/repo.key SIZE=$((64 * M))
MARKER=PULLBACK-PLAINTEXT-MARKER-7f3a
PASS="correct horse battery staple $RANDOM"
printf '%s\n' "$PASS" >"$T/pass"
printf 'not the passphrase\n' >"$T/wrongpass"

backup() { # VM OUT [options]
  local vm=$1 out=$2
  shift 2
  start_qemu_nbd vda -r -f qcow2 ${BITMAP:+-B "$BITMAP"} "$IMG"
  pullback backup --repo "$REPO" --vm "$vm" --disk "vda=$(nbd_uri vda)" "$@" --json >"$out"
  stop_server vda
}

# unchanged REPO: the store and the point list are as in $T/before.*
snapshot() { store_listing "$REPO" >"$T/before.store"; point_ids "$REPO" >"$T/before.points"; }
unchanged() {
  store_listing "$REPO" | cmp -s - "$T/before.store" || fail "the store changed"
  [ "$(point_ids "$REPO")" = "$(cat "$T/before.points")" ] || fail "the point list changed"
}

step "a disk with a text marker, random data and zeros"
for i in $(seq 1 4000); do echo "$MARKER line $i of the secret disk"; done >"$T/text"
randfile "$T/r1" $((2 * M))
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
qio "$IMG" qcow2 "write -s $T/text 0 $(stat -c %s "$T/text")" \
  "write -s $T/r1 $((8 * M)) $((2 * M))" "write -P 0x5a $((20 * M)) $((1 * M))"

step "key create (passphrase from a file), key show"
pullback key create --passphrase-file "$T/pass" --kdf-log2n 14 --json "$KEY" >"$T/kc.json"
FP=$(json_get "$T/kc.json" .fingerprint)
[ "$(json_get "$T/kc.json" .protected)" = true ] || fail "key create: not protected"
[ "$(stat -c %a "$KEY")" = 600 ] || fail "key file mode $(stat -c %a "$KEY")"
pullback key show --json "$KEY" >"$T/ks.json"
[ "$(json_get "$T/ks.json" .fingerprint)" = "$FP" ] || fail "key show: fingerprint"
[ "$(json_get "$T/ks.json" .log2n)" = 14 ] || fail "key show: log2n"
grep -qF "$PASS" "$KEY" && fail "the key file holds the passphrase"
expect_fail 2 pullback key create --passphrase-file "$T/pass" "$KEY"
expect_err "exists"
pullback key export --paper "$T/paper" --passphrase-file "$T/pass" "$KEY"
[ "$(stat -c %a "$T/paper")" = 600 ] || fail "paper file mode"
MASTER=$(sed -n 's/^ *[1-4]: *//p' "$T/paper" | awk '{print $1 $2 $3 $4}' | tr -d '\n')
[ ${#MASTER} = 64 ] || fail "could not read the master key off the paper copy: $MASTER"
grep -qiF "$MASTER" "$KEY" && fail "the wrapped key file holds the master key in clear"

step "init --encrypt"
pullback init --repo "$REPO" --encrypt --key-file "$KEY" --passphrase-file "$T/pass" --json >"$T/init.json"
[ "$(json_get "$T/init.json" .encrypted)" = true ] || fail "init: not encrypted"
[ "$(json_get "$T/init.json" .key)" = "$FP" ] || fail "init: key fingerprint"
grep -q '"version":2' "$REPO/store/config" || fail "store config is not version 2"
grep -q "\"key\":\"$FP\"" "$REPO/store/config" || fail "store config lacks the fingerprint"
expect_fail 2 pullback init --repo "$T/r2" --encrypt
expect_err "--key-file"
expect_fail 2 pullback init --repo "$T/r2" --key-file "$KEY"
expect_err "--encrypt"
[ ! -e "$T/r2" ] || fail "a refused init left $T/r2"

step "full backup (checkpoint cp1), restore, verify"
export PULLBACK_KEY_FILE=$KEY PULLBACK_PASSPHRASE=$PASS
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp1
BITMAP= backup secret-vm-name "$T/b1.json" --checkpoint cp1
P1=$(json_get "$T/b1.json" .point)
save_raw "$IMG" qcow2 "$T/p1.raw"
check_restore "$REPO" "$P1" secret-vm-name vda "$T/p1.raw"
pullback verify --repo "$REPO" --json >"$T/v1.json"
[ "$(json_get "$T/v1.json" '.problems|length')" = 0 ] || fail "verify found problems"

step "incremental since cp1 after writes, restore both points"
qio "$IMG" qcow2 "write -P 0x77 $((4 * M)) $((512 * K))" "write -P 0 $((8 * M)) $((256 * K))"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp2
BITMAP=cp1 backup secret-vm-name "$T/b2.json" --since cp1 --bitmap vda=cp1 --checkpoint cp2
P2=$(json_get "$T/b2.json" .point)
[ "$(json_get "$T/b2.json" .mode)" = incremental ] || fail "second backup not incremental"
[ "$(json_get "$T/b2.json" .disks[0].chunks_read)" -le 4 ] || fail "incremental read too much"
save_raw "$IMG" qcow2 "$T/p2.raw"
check_restore "$REPO" "$P2" secret-vm-name vda "$T/p2.raw"
check_restore "$REPO" "$P1" secret-vm-name vda "$T/p1.raw"

step "dedup across VMs: the same disk as VM b adds no data chunk"
BITMAP= backup b "$T/b3.json"
[ "$(json_get "$T/b3.json" .disks[0].chunks_new)" = 0 ] || fail "VM b stored new chunks"
[ "$(json_get "$T/b3.json" .disks[0].digest)" = "$(json_get "$T/b2.json" .disks[0].digest)" ] ||
  fail "same content, different digests"

step "no plaintext in the repository"
grep -rqaF "$MARKER" "$REPO" && fail "the disk's marker text is in the repository"
grep -rqaF secret-vm-name "$REPO/store" && fail "the VM name is in the store"
grep -rqaiF "$MASTER" "$REPO" && fail "the master key is in the repository"
grep -rqaF "$PASS" "$REPO" && fail "the passphrase is in the repository"
pullback show --repo "$REPO" --point "$P1" --json >"$T/s1.json"
CS=$(json_get "$T/s1.json" .disks[0].chunk_size)
PLAIN=$(head -c "$CS" "$T/p1.raw" | sha256sum | cut -c1-64)
sqlite3 "$REPO/catalog.db" "select lower(hex(id)) from chunk union all select lower(hex(id)) from map_node" >"$T/ids"
[ -s "$T/ids" ] || fail "no ids in the catalog"
grep -qF "$PLAIN" "$T/ids" && fail "the catalog holds the plain SHA-256 of a data chunk"
ls -R "$REPO/store/chunks" | grep -qF "$PLAIN" && fail "a chunk is filed under its plain SHA-256"
PLAIN_DIGEST=$(pullback digest "$T/p1.raw" --chunk-size "$CS" | cut -d' ' -f1)
[ "$PLAIN_DIGEST" != "$(json_get "$T/b1.json" .disks[0].digest)" ] || fail "the point digest is the plain one"
grep -qF "$PLAIN_DIGEST" "$T/ids" && fail "the plain digest is in the catalog"

step "wrong passphrase, other key, no key, superfluous key, loose mode: exit 13, nothing written"
snapshot
expect_fail 13 pullback list --repo "$REPO" --passphrase-file "$T/wrongpass"
expect_err "wrong passphrase"
(unset PULLBACK_PASSPHRASE; expect_fail 13 pullback list --repo "$REPO" </dev/null)
expect_err "protected by a passphrase" "--passphrase-file"
pullback key create --no-passphrase "$T/other.key" 2>"$T/other.err"
grep -q "not protected by a passphrase" "$T/other.err" || fail "no warning for an unwrapped key"
start_qemu_nbd vda -r -f qcow2 "$IMG"
expect_fail 13 pullback backup --repo "$REPO" --vm x --disk "vda=$(nbd_uri vda)" --key-file "$T/other.key"
expect_err "wrong key" "$FP"
(unset PULLBACK_KEY_FILE; expect_fail 13 pullback backup --repo "$REPO" --vm x --disk "vda=$(nbd_uri vda)")
expect_err "is encrypted" "--key-file"
stop_server vda
(unset PULLBACK_KEY_FILE; expect_fail 13 pullback restore --repo "$REPO" --point "$P1" --vm secret-vm-name --disk vda --to "$T/x.raw")
[ ! -e "$T/x.raw" ] || fail "a refused restore left a target"
chmod 644 "$T/other.key"
expect_fail 13 pullback list --repo "$REPO" --key-file "$T/other.key"
expect_err "chmod"
chmod 600 "$T/other.key"
unchanged
pullback init --repo "$T/plain"
expect_fail 13 pullback list --repo "$T/plain"
expect_err "not encrypted"

step "a passphrase and key never on the command line of a running backup"
save_raw "$IMG" qcow2 "$T/cur.raw"
start_nbdkit slow --filter=delay file "$T/cur.raw" rdelay=100ms
# The binary itself, not the shell function: $! must be pullback's pid.
"$PULLBACK_BIN" backup --repo "$REPO" --vm slow --disk "vda=$(nbd_uri slow)" >"$T/slow.out" 2>"$T/slow.err" &
BPID=$!
track_pid "$BPID"
# Until exec, the child's command line is the shell's.
wait_for 20 "the backup to start" grep -qa -- --vm "/proc/$BPID/cmdline"
tr '\0' ' ' <"/proc/$BPID/cmdline" >"$T/cmdline"
note "cmdline: $(cat "$T/cmdline")"
grep -q backup "$T/cmdline" || fail "did not catch the backup's command line"
grep -qF "$PASS" "$T/cmdline" && fail "the passphrase is on the command line"
grep -qiF "$MASTER" "$T/cmdline" && fail "the key is on the command line"
wait "$BPID" || fail "the slow backup failed: $(cat "$T/slow.err")"
stop_server slow

step "tampering: a chunk copied over another, a flipped bit, a damaged point record"
cp -a "$REPO" "$T/pristine"
mapfile -t OBJS < <(find "$REPO/store/chunks" -type f ! -name '.*' -size +8k | sort)
[ "${#OBJS[@]}" -ge 3 ] || fail "too few chunk objects (${#OBJS[@]})"
VICTIM=$(basename "${OBJS[1]}")
cp "${OBJS[0]}" "${OBJS[1]}"
expect_fail 7 pullback verify --repo "$REPO" --point "$P1" --json
grep -qF "$VICTIM" "$LAST_OUT" || fail "verify does not name the swapped chunk $VICTIM: $(cat "$LAST_OUT")"
expect_fail 7 pullback restore --repo "$REPO" --point "$P1" --vm secret-vm-name --disk vda --to "$T/t1.raw"
[ ! -e "$T/t1.raw" ] || fail "restore left a target after a swapped chunk"
rm -rf "$REPO"; cp -a "$T/pristine" "$REPO"
"$PYTHON" - "${OBJS[2]}" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 0x10
open(p, 'wb').write(b)
EOF
expect_fail 7 pullback verify --repo "$REPO" --json
grep -qF "$(basename "${OBJS[2]}")" "$LAST_OUT" || fail "verify does not name the damaged chunk"
rm -rf "$REPO"; cp -a "$T/pristine" "$REPO"
REC=$REPO/store/points/$(printf '%010d' "$P1")
"$PYTHON" - "$REC" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[-20] ^= 0x01
open(p, 'wb').write(b)
EOF
expect_fail 7 pullback verify --repo "$REPO" --point "$P1"
grep -q "point record" "$LAST_OUT" || fail "verify does not name the point record: $(cat "$LAST_OUT")"
expect_fail 7 pullback restore --repo "$REPO" --point "$P1" --vm secret-vm-name --disk vda --to "$T/t2.raw"
[ ! -e "$T/t2.raw" ] || fail "restore left a target after a damaged point record"
rm -rf "$REPO"; cp -a "$T/pristine" "$REPO"

step "an altered catalog: P1's disk pointed at P2's map tree is refused"
sqlite3 "$REPO/catalog.db" "update point_disk set map_root = (select map_root from point_disk where point_id = $P2), digest = (select digest from point_disk where point_id = $P2) where point_id = $P1"
expect_fail 7 pullback restore --repo "$REPO" --point "$P1" --vm secret-vm-name --disk vda --to "$T/t3.raw"
expect_err "does not match the point record" "map_root"
[ ! -e "$T/t3.raw" ] || fail "restore left a target after an altered catalog"
expect_fail 7 pullback verify --repo "$REPO" --point "$P1"
grep -q "does not match the point record" "$LAST_OUT" || fail "verify misses the altered catalog: $(cat "$LAST_OUT")"
rm -rf "$REPO"; cp -a "$T/pristine" "$REPO"
pullback verify --repo "$REPO"

step "change-passphrase: same key, new passphrase"
printf 'a new passphrase\n' >"$T/pass2"
pullback key change-passphrase --passphrase-file "$T/pass" --new-passphrase-file "$T/pass2" --kdf-log2n 14 --json "$KEY" >"$T/cp.json"
[ "$(json_get "$T/cp.json" .fingerprint)" = "$FP" ] || fail "change-passphrase changed the key"
ls -a "$T" | grep -q '^\.tmp' && fail "change-passphrase left a temporary file"
expect_fail 13 pullback list --repo "$REPO" --passphrase-file "$T/pass"
expect_err "wrong passphrase"
PULLBACK_PASSPHRASE='a new passphrase' pullback list --repo "$REPO" --json >"$T/l2.json"
[ "$(json_get "$T/l2.json" '.points|length')" -ge 3 ] || fail "list with the new passphrase"

step "paper copy typed back (case and spaces changed) opens the repository; a typo is named"
tr 'a-f' 'A-F' <"$T/paper" | sed 's/ \([0-9A-F]\{4\}\)/  \1/g' >"$T/paper.typed"
pullback key import --paper "$T/paper.typed" --no-passphrase "$T/imported.key" 2>/dev/null
[ "$(stat -c %a "$T/imported.key")" = 600 ] || fail "imported key file mode"
env -u PULLBACK_PASSPHRASE pullback restore --repo "$REPO" --key-file "$T/imported.key" \
  --point "$P2" --vm secret-vm-name --disk vda --to "$T/fromPaper.raw"
same_image "$T/fromPaper.raw" raw "$T/p2.raw" raw
"$PYTHON" - "$T/paper" "$T/paper.typo" <<'EOF'
import re, sys
out = []
for line in open(sys.argv[1]):
    m = re.match(r'^(\s*2:\s*)([0-9a-fA-F])(.*)$', line, re.S)
    if m:    # one wrong digit at the start of line 2's key bytes
        line = m.group(1) + ('1' if m.group(2) == '0' else '0') + m.group(3)
    out.append(line)
open(sys.argv[2], 'w').write(''.join(out))
EOF
cmp -s "$T/paper" "$T/paper.typo" && fail "the typo was not made"
expect_fail 13 pullback key import --paper "$T/paper.typo" --no-passphrase "$T/typo.key"
expect_err "line 2"
[ ! -e "$T/typo.key" ] || fail "a refused import left a key file"

step "no key material in any output of this test"
for f in "$T"/*.json "$T"/*.out "$T"/*.err "$T"/last.*; do
  [ -e "$f" ] || continue
  grep -qiF "$MASTER" "$f" && fail "the master key is in $f"
  grep -qF "$PASS" "$f" && fail "the passphrase is in $f"
done
echo PASS
