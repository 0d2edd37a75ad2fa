#!/bin/bash
# test-space-bad-input.sh - every bad input of forget, protect, unprotect,
# gc and stats is refused with its documented exit code and a message
# naming the problem, and a refusal removes nothing.
#
# Proves (exit code in brackets):
#  - forget without --point or a --keep-* rule [2], the message pointing to
#    "--keep-last 0"; a negative, non-numeric or empty count for every
#    --keep-* rule [2]; --point together with a rule [2]; a non-numeric
#    --point [2];
#  - unknown point (forget, protect, unprotect), unknown VM (forget --vm
#    with a rule, --point latest --vm) [9];
#  - forget --point of a protected point [15], class "protected", also with
#    --dry-run and --gc; a policy run keeps it;
#  - missing --repo [2]; a directory that is not a repository, or none at
#    all [3] (and it is not created); unknown options and stray arguments [2];
#  - with --json every failure prints {"error":{"code","class","message"}}.
# After every refusal `pullback list` shows the same points and the store
# (chunks, map nodes, point records) is byte-for-byte untouched.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3

IMG=$T/disk.qcow2 REPO=$T/repo SIZE=$((32 * M))

step "set-up: vm1 with points P1 (cp1, protected) and P2, vm2 with Q1"
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
qio "$IMG" qcow2 "write -P 0x11 0 $((2 * M))"
pullback init --repo "$REPO"
start_qemu_nbd vda -r -f qcow2 "$IMG"
URI=$(nbd_uri vda)
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$URI" --checkpoint cp1 --json >"$T/b1.json"
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$URI" --checkpoint cp2 --json >"$T/b2.json"
pullback backup --repo "$REPO" --vm vm2 --disk "vda=$URI" --json >"$T/q1.json"
stop_server vda
save_raw "$IMG" qcow2 "$T/p.raw"
P1=$(json_get "$T/b1.json" .point) P2=$(json_get "$T/b2.json" .point) Q1=$(json_get "$T/q1.json" .point)
pullback protect --repo "$REPO" --point "$P1"
POINTS=$(point_ids "$REPO")
STORE=$(store_listing "$REPO")
[ "$POINTS" = "$P1 $P2 $Q1" ] || fail "list: $POINTS"
unchanged() {
  [ "$(point_ids "$REPO")" = "$POINTS" ] || fail "points changed: $(point_ids "$REPO"), expected $POINTS"
  [ "$(store_listing "$REPO")" = "$STORE" ] || fail "the store changed"
}
FG=(pullback forget --repo "$REPO")

step "forget without a rule or --point [2]: points to --keep-last 0"
expect_fail 2 "${FG[@]}"
expect_err "--keep-last 0"
unchanged
expect_fail 2 "${FG[@]}" --vm vm1 --json
expect_json_error 2
grep -qF -- "--keep-last 0" "$LAST_OUT" || fail "JSON message lacks --keep-last 0"
expect_fail 2 "${FG[@]}" --dry-run
expect_err "--keep-last 0"
expect_fail 2 "${FG[@]}" --gc
unchanged

step "bad counts for every rule [2]"
for rule in last hourly daily weekly monthly yearly; do
  expect_fail 2 "${FG[@]}" "--keep-$rule" -1
  expect_err "keep-$rule"
  expect_fail 2 "${FG[@]}" "--keep-$rule" abc
  expect_err "keep-$rule"
  expect_fail 2 "${FG[@]}" "--keep-$rule" 1.5 --dry-run
  expect_fail 2 "${FG[@]}" "--keep-$rule" ""
  expect_fail 2 "${FG[@]}" --keep-last 1 "--keep-$rule" -3 --json
  expect_json_error 2
  unchanged
done
expect_fail 2 "${FG[@]}" --keep-last 2x
expect_err 2x
expect_fail 2 "${FG[@]}" --keep-last
unchanged

step "--point with a rule [2]; --point not a number [2]"
expect_fail 2 "${FG[@]}" --point "$P2" --keep-last 1
expect_err --point
expect_fail 2 "${FG[@]}" --point "$P2" --keep-daily 0 --json
expect_json_error 2
expect_fail 2 "${FG[@]}" --point banana
expect_err banana
expect_fail 2 "${FG[@]}" --point -1
expect_fail 2 pullback protect --repo "$REPO" --point banana
expect_fail 2 pullback unprotect --repo "$REPO" --point ""
unchanged

step "unknown point or VM [9]"
expect_fail 9 "${FG[@]}" --point 999
expect_err 999
expect_fail 9 "${FG[@]}" --point 999 --dry-run --json
expect_json_error 9
expect_fail 9 "${FG[@]}" --vm nosuchvm --keep-last 1
expect_err nosuchvm
expect_fail 9 "${FG[@]}" --vm nosuchvm --keep-last 0 --json
expect_json_error 9
expect_fail 9 "${FG[@]}" --point latest --vm nosuchvm
expect_err nosuchvm
expect_fail 9 "${FG[@]}" --point "$P2" --vm nosuchvm
expect_fail 9 pullback protect --repo "$REPO" --point 999
expect_err 999
expect_fail 9 pullback unprotect --repo "$REPO" --point 999 --json
expect_json_error 9
unchanged

step "a protected point [15]: not removed, whatever the options"
expect_fail 15 "${FG[@]}" --point "$P1"
expect_err "$P1" protected
expect_fail 15 "${FG[@]}" --point "$P1" --json
expect_json_error 15
[ "$(json_get "$LAST_OUT" .error.class)" = protected ] || fail "class $(json_get "$LAST_OUT" .error.class), expected protected"
expect_fail 15 "${FG[@]}" --point "$P1" --dry-run
expect_fail 15 "${FG[@]}" --point "$P1" --gc --json
expect_json_error 15
expect_fail 15 "${FG[@]}" --point "$P1" --vm vm1
unchanged
pullback forget --repo "$REPO" --vm vm1 --keep-last 0 --dry-run --json >"$T/dry.json"
[ "$(json_ids "$T/dry.json" kept)" = "$P1" ] || fail "--keep-last 0 --dry-run keeps $(json_ids "$T/dry.json" kept)"
[ "$(json_ids "$T/dry.json" removed)" = "$P2" ] || fail "--keep-last 0 --dry-run removes $(json_ids "$T/dry.json" removed)"
unchanged

step "missing --repo [2]"
for cmd in "forget --keep-last 1" "forget --point $P2" "protect --point $P2" "unprotect --point $P1" gc stats; do
  read -ra a <<<"$cmd"
  expect_fail 2 pullback "${a[@]}"
  expect_err --repo
  expect_fail 2 pullback "${a[@]}" --json
  expect_json_error 2
done
expect_fail 2 pullback protect --repo "$REPO"
expect_err --point
expect_fail 2 pullback unprotect --repo "$REPO" --json
expect_json_error 2
expect_fail 2 pullback gc --repo
unchanged

step "not a repository [3]"
mkdir "$T/empty"
for cmd in "forget --keep-last 1" "forget --point 1" "protect --point 1" "unprotect --point 1" gc "gc --dry-run" stats; do
  read -ra a <<<"$cmd"
  expect_fail 3 pullback "${a[@]}" --repo "$T/empty"
  expect_err "$T/empty"
  expect_fail 3 pullback "${a[@]}" --repo "$T/absent" --json
  expect_json_error 3
done
[ ! -e "$T/absent" ] || fail "a command created the absent repository"
[ -z "$(ls -A "$T/empty")" ] || fail "a command wrote into the non-repository: $(ls -A "$T/empty")"
echo "not a repository" >"$T/afile"
expect_fail 3 pullback gc --repo "$T/afile"
expect_fail 3 pullback stats --repo "$T/afile" --json
expect_json_error 3
[ "$(cat "$T/afile")" = "not a repository" ] || fail "gc/stats changed a plain file"

step "unknown options, stray arguments [2]; --help [0]"
expect_fail 2 "${FG[@]}" --keep-last 1 --frobnicate
expect_err frobnicate
expect_fail 2 "${FG[@]}" --keep-fortnightly 1
expect_err keep-fortnightly
expect_fail 2 pullback gc --repo "$REPO" --keep-last 1
expect_err keep-last
expect_fail 2 pullback gc --repo "$REPO" --frobnicate --json
expect_json_error 2
expect_fail 2 pullback stats --repo "$REPO" --dry-run
expect_err dry-run
expect_fail 2 pullback protect --repo "$REPO" --point "$P2" --keep-last 1
expect_fail 2 pullback unprotect --repo "$REPO" --point "$P1" --frobnicate
expect_fail 2 pullback gc --repo "$REPO" stray
expect_err stray
expect_fail 2 pullback stats --repo "$REPO" stray
unchanged
pullback forget --help | grep -q -- --keep-last || fail "forget --help"
pullback help gc | grep -q -- --dry-run || fail "help gc"
pullback protect --help | grep -q -- --point || fail "protect --help"
pullback stats --help >/dev/null || fail "stats --help"
pullback --help | grep -qw forget || fail "pullback --help does not list forget"

step "after all that, the repository is intact and the refused operations still work"
unchanged
pullback stats --repo "$REPO" --json >"$T/stats.json"
[ "$(json_get "$T/stats.json" .points)" = 3 ] || fail "stats: points"
pullback gc --repo "$REPO" --dry-run --json >"$T/gc.json"
[ "$(json_get "$T/gc.json" .dry_run)" = true ] || fail "gc --dry-run: dry_run"
unchanged
pullback verify --repo "$REPO"
for p in $POINTS; do
  vm=vm1
  [ "$p" = "$Q1" ] && vm=vm2
  check_restore "$REPO" "$p" "$vm" vda "$T/p.raw"
done
pullback unprotect --repo "$REPO" --point "$P1"
pullback forget --repo "$REPO" --point "$P1" --json >"$T/f.json"
[ "$(json_get "$T/f.json" .removed)" = "[$P1]" ] || fail "forget of the unprotected point"
[ "$(point_ids "$REPO")" = "$P2 $Q1" ] || fail "list: $(point_ids "$REPO")"
echo PASS
