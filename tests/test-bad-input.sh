#!/bin/bash
# test-bad-input.sh - every bad input is refused with its documented exit
# code and a message naming the problem, and refusing records nothing and
# overwrites nothing.
#
# Proves (exit code in brackets):
#  - backup: --since an unknown checkpoint [5], and with --fallback-full a
#    full backup whose JSON says mode "full" and why (fallback_reason); a
#    bitmap the export lacks [6] (the message lists what it does export); an
#    incremental disk without --bitmap [6]; an unreachable NBD socket [4]; a
#    malformed --disk or URI [2]; a failed backup (second disk unreachable,
#    server killed mid-way, pullback interrupted [12]) records no point, and
#    --since its checkpoint is then refused [5];
#  - repository: not initialised / absent [3], init on an existing one [3]
#    (left untouched), bad chunk sizes [2];
#  - command line: unknown option or command, missing argument [2];
#  - unknown point, VM or disk [9];
#  - restore onto an existing file without --force [8] (file unchanged),
#    with --force [0]; onto an image held by a running qemu-nbd [8] (image
#    unchanged);
#  - with --json, failures print {"error":{"code","class","message"}}.
# After each refusal `pullback list` shows the same points as before.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd nbdkit python3 sha256sum

IMG=$T/disk.qcow2 REPO=$T/repo SIZE=$((64 * M))

step "set-up: 64 MiB qcow2 with bitmap cp1 exported, repository with one full point (cp1)"
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
qio "$IMG" qcow2 "write -P 0x11 0 $((4 * M))" "write -P 0x12 $((60 * M)) $((1 * M))"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp1
start_qemu_nbd vda -r -f qcow2 -B cp1 "$IMG"
URI=$(nbd_uri vda)
pullback init --repo "$REPO"
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$URI" --checkpoint cp1 --json >"$T/b1.json"
P1=$(json_get "$T/b1.json" .point)
save_raw "$IMG" qcow2 "$T/p1.raw"
POINTS=$(point_ids "$REPO")
unchanged() { [ "$(point_ids "$REPO")" = "$POINTS" ] || fail "points changed: $(point_ids "$REPO"), expected $POINTS"; }
BK=(pullback backup --repo "$REPO" --vm vm1)

step "--since an unknown checkpoint: exit 5"
expect_fail 5 "${BK[@]}" --disk "vda=$URI" --since nosuch --bitmap vda=cp1 --checkpoint cp9
expect_err nosuch
unchanged
expect_fail 5 "${BK[@]}" --disk "vda=$URI" --since nosuch --bitmap vda=cp1 --json
expect_json_error 5
unchanged
expect_fail 5 pullback backup --repo "$REPO" --vm othervm --disk "vda=$URI" --since cp1 --bitmap vda=cp1
expect_err cp1
unchanged

step "--since unknown with --fallback-full: a full backup saying why"
"${BK[@]}" --disk "vda=$URI" --since nosuch --bitmap vda=cp1 --checkpoint cpf --fallback-full --json >"$T/bf.json"
cat "$T/bf.json"
[ "$(json_get "$T/bf.json" .mode)" = full ] || fail "fallback mode"
[ "$(json_get "$T/bf.json" .parent)" = null ] || fail "fallback parent"
REASON=$(json_get "$T/bf.json" .fallback_reason)
[ "$REASON" != null ] && [ -n "$REASON" ] || fail "fallback_reason not set"
grep -qi nosuch <<<"$REASON" || fail "fallback_reason does not name the checkpoint: $REASON"
PF=$(json_get "$T/bf.json" .point)
POINTS="$POINTS $PF"
unchanged
check_restore "$REPO" "$PF" vm1 vda "$T/p1.raw"
"${BK[@]}" --disk "vda=$URI" --since cp1 --bitmap vda=cp1 --fallback-full --json >"$T/bnf.json"
[ "$(json_get "$T/bnf.json" .mode)" = incremental ] || fail "--fallback-full with a known checkpoint must stay incremental"
[ "$(json_get "$T/bnf.json" .fallback_reason)" = null ] || fail "no fallback_reason expected"
POINTS="$POINTS $(json_get "$T/bnf.json" .point)"

step "bitmaps: not exported [6], missing --bitmap [6]"
expect_fail 6 "${BK[@]}" --disk "vda=$URI" --since cp1 --bitmap vda=nosuchbm --checkpoint cp9
expect_err nosuchbm "qemu:dirty-bitmap:cp1"
unchanged
expect_fail 6 "${BK[@]}" --disk "vda=$URI" --since cp1 --checkpoint cp9
expect_err vda --bitmap
unchanged
expect_fail 6 "${BK[@]}" --disk "vda=$URI" --disk "vdb=$URI" --since cp1 --bitmap vda=cp1
expect_err vdb --bitmap
unchanged
start_qemu_nbd nobm -r -f qcow2 "$IMG" # same image, exported without any bitmap
expect_fail 6 "${BK[@]}" --disk "vda=$(nbd_uri nobm)" --since cp1 --bitmap vda=cp1 --json
expect_json_error 6
grep -q 'qemu:dirty-bitmap:cp1' "$LAST_OUT" || fail "JSON message does not name the missing context"
unchanged
stop_server nobm

step "NBD server unreachable [4], malformed --disk / URI [2]"
expect_fail 4 "${BK[@]}" --disk "vda=nbd+unix:///?socket=$T/nosuch.sock"
expect_err "$T/nosuch.sock"
unchanged
expect_fail 4 "${BK[@]}" --disk "vda=nbd+unix:///?socket=$T/nosuch.sock" --json
expect_json_error 4
expect_fail 2 "${BK[@]}" --disk "vda=not a uri"
expect_err "not a uri"
expect_fail 2 "${BK[@]}" --disk "vda=http://127.0.0.1/x"
expect_fail 2 "${BK[@]}" --disk "$URI"
expect_fail 2 "${BK[@]}" --disk "=$URI"
expect_fail 2 "${BK[@]}" --disk "vda="
expect_fail 2 "${BK[@]}" --disk "vda=$URI" --disk "vda=$URI"
expect_err vda
expect_fail 2 "${BK[@]}" --disk "vda=$URI" --bitmap vda=cp1
expect_err --since
expect_fail 2 "${BK[@]}" --disk "vda=$URI" --since cp1 --bitmap vda=cp1 --bitmap vdz=cp1
expect_err vdz
expect_fail 2 "${BK[@]}" --disk "vda=$URI" --since cp1 --bitmap vda=cp1 --bitmap vda=cp2
expect_fail 2 "${BK[@]}" --disk "vda=$URI" --since cp1 --bitmap vda
expect_fail 2 pullback backup --repo "$REPO" --repo "$T/other" --vm vm1 --disk "vda=$URI"
expect_fail 2 pullback backup --repo "$REPO" --disk "vda=$URI"
expect_err --vm
expect_fail 2 "${BK[@]}"
expect_err --disk
unchanged

step "a failed backup records no point, and its checkpoint cannot be used"
expect_fail 4 "${BK[@]}" --disk "vda=$URI" --disk "vdb=nbd+unix:///?socket=$T/nosuch.sock" --checkpoint cpfail
unchanged
expect_fail 5 "${BK[@]}" --disk "vda=$URI" --since cpfail --bitmap vda=cp1
expect_err cpfail
unchanged

step "server killed in the middle of a backup [4]: no point"
start_nbdkit big --filter=rate random size=$((8 * G)) rate=512M # 64 MB/s
"${BK[@]}" --disk "vda=$(nbd_uri big)" --checkpoint cpkill >"$T/kill.out" 2>"$T/kill.err" &
BPID=$!
track_pid "$BPID"
sleep 1
pid_alive "$BPID" || fail "backup of 8 GiB random data ended within 1 s: $(cat "$T/kill.err")"
stop_server big
RC=0
wait "$BPID" || RC=$?
[ "$RC" = 4 ] || fail "backup whose server died: exit $RC (expected 4): $(cat "$T/kill.err")"
note "exit 4: $(head -n 1 "$T/kill.err")"
unchanged
expect_fail 5 "${BK[@]}" --disk "vda=$URI" --since cpkill --bitmap vda=cp1

step "backup interrupted by SIGINT [12]: no point"
start_nbdkit big2 --filter=rate random size=$((8 * G)) rate=512M
env --default-signal=INT "$PULLBACK_BIN" backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri big2)" \
  --checkpoint cpint >"$T/int.out" 2>"$T/int.err" &
BPID=$!
track_pid "$BPID"
sleep 1
pid_alive "$BPID" || fail "backup of 8 GiB random data ended within 1 s: $(cat "$T/int.err")"
kill -INT "$BPID"
RC=0
wait "$BPID" || RC=$?
[ "$RC" = 12 ] || fail "interrupted backup: exit $RC (expected 12): $(cat "$T/int.err")"
grep -q '^pullback: ' "$T/int.err" || fail "no message from the interrupted backup"
note "exit 12: $(head -n 1 "$T/int.err")"
unchanged
stop_server big2
expect_fail 5 "${BK[@]}" --disk "vda=$URI" --since cpint --bitmap vda=cp1

step "repository problems [3], bad chunk sizes [2]"
expect_fail 3 pullback list --repo "$T/absent"
expect_err "$T/absent"
mkdir "$T/empty"
expect_fail 3 pullback list --repo "$T/empty"
expect_fail 3 pullback backup --repo "$T/empty" --vm vm1 --disk "vda=$URI"
expect_fail 3 pullback restore --repo "$T/absent" --point 1 --vm vm1 --disk vda --to "$T/x.raw"
expect_fail 3 pullback verify --repo "$T/absent" --json
expect_json_error 3
[ ! -e "$T/absent" ] || fail "a command created the absent repository"
SUM=$(sha256sum "$REPO/catalog.db")
expect_fail 3 pullback init --repo "$REPO"
expect_err "$REPO"
[ "$(sha256sum "$REPO/catalog.db")" = "$SUM" ] || fail "init on an existing repository changed its catalog"
unchanged
for cs in 1000 32K 32M 0 abc -1 1.5M; do
  expect_fail 2 pullback init --repo "$T/badcs" --chunk-size "$cs"
  [ ! -e "$T/badcs/catalog.db" ] || fail "init --chunk-size $cs created a repository"
done
expect_err "1.5M"
pullback init --repo "$T/cs64k" --chunk-size 64K
pullback init --repo "$T/cs16m" --chunk-size 16M

step "command line [2]; help and version [0]"
pullback --help | grep -q 'Usage: pullback' || fail "--help"
pullback backup --help | grep -q -- '--since' || fail "backup --help"
pullback help restore | grep -q -- '--force' || fail "help restore"
pullback --version | grep -q '^pullback [0-9]' || fail "--version"
expect_fail 2 pullback frobnicate
expect_err frobnicate
expect_fail 2 pullback
expect_fail 2 pullback list --repo "$REPO" --no-such-option
expect_err no-such-option
expect_fail 2 pullback list --repo
expect_fail 2 pullback show --repo "$REPO"
expect_fail 2 pullback show --repo "$REPO" --point banana
expect_fail 2 pullback restore --repo "$REPO" --point "$P1" --vm vm1 --disk vda
expect_fail 2 pullback restore --repo "$REPO" --point "$P1" --vm vm1 --disk vda --to "$T/x.img" --format vmdk
expect_err vmdk
[ ! -e "$T/x.img" ] || fail "a refused restore created its target"

expect_fail 2 pullback digest "$T/p1.raw" --repo "$REPO" --chunk-size 64K
expect_fail 2 pullback digest
expect_fail 2 pullback digest "$URI" --chunk-size 3K

step "unknown point, VM, disk [9]"
expect_fail 9 pullback show --repo "$REPO" --point 999
expect_err 999
expect_fail 9 pullback show --repo "$REPO" --point 999 --json
expect_json_error 9
expect_fail 9 pullback show --repo "$REPO" --point latest --vm nosuchvm
expect_err nosuchvm
expect_fail 9 pullback restore --repo "$REPO" --point 999 --vm vm1 --disk vda --to "$T/x.raw"
expect_fail 9 pullback restore --repo "$REPO" --point latest --vm nosuchvm --disk vda --to "$T/x.raw"
expect_fail 9 pullback restore --repo "$REPO" --point "$P1" --vm vm1 --disk vdz --to "$T/x.raw"
expect_err vdz
expect_fail 9 pullback verify --repo "$REPO" --point 999
expect_fail 9 pullback show --repo "$REPO" --point "$P1" --vm othervm
expect_fail 9 pullback restore --repo "$REPO" --point "$P1" --vm othervm --disk vda --to "$T/x.raw"
[ ! -e "$T/x.raw" ] || fail "a refused restore created its target"

step "restore onto an existing file: refused without --force [8], replaced with --force"
head -c $((1 * M)) /dev/urandom >"$T/existing.raw"
SUM=$(sha256sum <"$T/existing.raw")
expect_fail 8 pullback restore --repo "$REPO" --point "$P1" --vm vm1 --disk vda --to "$T/existing.raw"
expect_err "$T/existing.raw"
[ "$(sha256sum <"$T/existing.raw")" = "$SUM" ] || fail "refused restore changed the existing file"
expect_fail 8 pullback restore --repo "$REPO" --point "$P1" --vm vm1 --disk vda --to "$T/existing.raw" --json
expect_json_error 8
[ "$(sha256sum <"$T/existing.raw")" = "$SUM" ] || fail "refused restore changed the existing file"
pullback restore --repo "$REPO" --point "$P1" --vm vm1 --disk vda --to "$T/existing.raw" --force
same_image "$T/existing.raw" raw "$T/p1.raw" raw

step "restore onto an image a running qemu-nbd holds [8], even with --force"
qemu-img create -q -f qcow2 "$T/busy.qcow2" "$SIZE"
qio "$T/busy.qcow2" qcow2 "write -P 0x77 0 $((1 * M))"
SUM=$(sha256sum <"$T/busy.qcow2")
start_qemu_nbd busy -f qcow2 "$T/busy.qcow2"
expect_fail 8 pullback restore --repo "$REPO" --point "$P1" --vm vm1 --disk vda --to "$T/busy.qcow2" \
  --format qcow2 --force
expect_err "$T/busy.qcow2"
stop_server busy
[ "$(sha256sum <"$T/busy.qcow2")" = "$SUM" ] || fail "restore changed the locked image"
check_patterns "$T/busy.qcow2" qcow2 "0x77 0 $((1 * M))"

step "after all that, the repository is intact"
unchanged
pullback verify --repo "$REPO"
echo PASS
