#!/bin/bash
# test-faults.sh - faults are errors, not damage: each gives its documented
# exit code and a message naming the problem, records no point, and leaves
# the earlier points intact (they verify and restore bit-exact); the next
# normal backup works.  Transient NBD failures are retried (--retries).
#
# Proves (exit code in brackets):
#  - repository on a full file system (a tmpfs with size=) [14], "No space
#    left on device"; gc then frees what the failed backup wrote;
#  - a file-size limit (RLIMIT_FSIZE, ulimit -f) [14], "File too large"
#    (pullback ignores SIGXFSZ, which would otherwise kill it silently);
#  - a read-only repository (read-only bind mount: root ignores modes) [11],
#    "read-only";
#  - a vanished repository, before the backup [3] and renamed away during
#    it [3] "vanished" (nothing is made again at the old path);
#  - a second process holding the catalog's write lock (python3 sqlite3
#    BEGIN IMMEDIATE; PULLBACK_BUSY_TIMEOUT_MS makes the wait short), from
#    before the backup and taken while it runs [10], "locked";
#  - the catalog's file system full while the store has room (a 160 KiB
#    tmpfs, the store bind-mounted from elsewhere) [14], SQLite's
#    "database or disk is full";
#  - reads failing with EIO (nbdkit error filter): --retries 0 [4]; with
#    retries the backup succeeds, says how often it retried (a warning per
#    retry, "retries" in the JSON) and restores bit-exact; a server that
#    always fails [4] "gave up after N retries", with N warnings;
#  - a server that sends short reads (nbdkit sh plugin) [4];
#  - the NBD server killed (SIGKILL: the connection drops) or stopped
#    (SIGTERM: nbdkit answers ESHUTDOWN first) in the middle of a backup and
#    started again on the same socket: the backup reconnects and succeeds,
#    bit-exact;
#    killed and not restarted: [4] (test-bad-input.sh covers the rest);
#  - a restore into a full file system: [14], nothing left behind.
# Every mount is made inside $T and undone at exit.
source "$(dirname "$0")/functions.sh"
requires nbdkit qemu-img python3 sha256sum sqlite3
requires_root

IMG=$T/disk.raw REPO=$T/repo SIZE=$((16 * M))
export PULLBACK_RETRY_DELAY_MS=50 PULLBACK_BUSY_TIMEOUT_MS=300

step "set-up: 16 MiB raw image served by nbdkit, repository with point 1"
randfile "$IMG" "$SIZE"
start_nbdkit src file "$IMG"
URI=$(nbd_uri src)
pullback init --repo "$REPO"
pullback backup --repo "$REPO" --vm vm1 --disk "vda=$URI" --checkpoint cp1 --json >"$T/b1.json"
P1=$(json_get "$T/b1.json" .point)
[ "$(json_get "$T/b1.json" '.disks[0].retries')" = 0 ] || fail "retries on a healthy server"
cp "$IMG" "$T/p1.raw"
POINTS=$(point_ids "$REPO")
BK=(pullback backup --repo "$REPO" --vm vm1)

# intact [REPO]: no point was added or lost, and every point verifies.
intact() {
  local repo=${1:-$REPO}
  [ "$(point_ids "$repo")" = "$POINTS" ] || fail "points changed: $(point_ids "$repo"), expected $POINTS"
  pullback verify --repo "$repo" >/dev/null || fail "verify failed after the fault"
}
# unmount_at_exit DIR
unmount_at_exit() { cleanup_fn "umount -l $1 2>/dev/null || true"; }

step "disk full: repository on a 4 MiB tmpfs [14]"
mkdir "$T/small"
if mount -t tmpfs -o size=4m tmpfs "$T/small" 2>"$T/mount.err"; then
  unmount_at_exit "$T/small"
  SREPO=$T/small/repo
  head -c $((1 * M)) /dev/urandom >"$T/tiny.raw"
  start_nbdkit tiny file "$T/tiny.raw"
  pullback init --repo "$SREPO"
  pullback backup --repo "$SREPO" --vm tiny --disk "vda=$(nbd_uri tiny)" --quiet
  SPOINTS=$(point_ids "$SREPO")
  expect_fail 14 pullback backup --repo "$SREPO" --vm vm1 --disk "vda=$URI" --json
  expect_json_error 14
  [ "$(json_get "$LAST_OUT" .error.class)" = no_space ] || fail "class of a full disk"
  # Whichever fills the file system first, a chunk file or the catalog's
  # WAL (chunks are written on worker threads), the message says so.
  grep -qiE "No space left on device|disk is full" "$LAST_ERR" ||
    fail "the message does not say the disk is full: $(cat "$LAST_ERR")"
  [ "$(point_ids "$SREPO")" = "$SPOINTS" ] || fail "a point was recorded on a full disk"
  pullback verify --repo "$SREPO" >/dev/null
  pullback gc --repo "$SREPO" --json >"$T/gc.json"
  note "gc after the failed backup freed $(json_get "$T/gc.json" .bytes_freed) bytes"
  check_restore "$SREPO" latest tiny vda "$T/tiny.raw"
  # A restore of 16 MiB of random data into what is left: the workers'
  # writes fail; exit 14, and neither the target nor a temporary image
  # stays behind.
  expect_fail 14 pullback restore --repo "$REPO" --point "$P1" --vm vm1 --disk vda \
    --to "$T/small/big.raw" --json
  expect_json_error 14
  [ -z "$(find "$T/small" -maxdepth 1 -name 'big.raw*' | head -n 1)" ] ||
    fail "a failed restore left $(find "$T/small" -maxdepth 1 -name 'big.raw*')"
  note "restore into a full file system: $(head -n 1 "$LAST_ERR")"
  qemu-img create -q -f raw "$T/small-next.raw" $((1 * M))   # all zero: fits
  start_nbdkit next file "$T/small-next.raw"
  pullback backup --repo "$SREPO" --vm tiny --disk "vda=$(nbd_uri next)" --quiet
  stop_server next
  stop_server tiny
  umount "$T/small"
else
  note "cannot mount a tmpfs here ($(cat "$T/mount.err")): ENOSPC not tested, RLIMIT_FSIZE below is"
fi

step "catalog's file system full, store elsewhere: SQLite 'disk is full' [14]"
if mount -t tmpfs -o size=160k tmpfs "$T/small" 2>"$T/mount.err"; then
  CREPO=$T/small/repo
  pullback init --repo "$CREPO"
  mkdir "$T/cstore"
  mv "$CREPO/store/"* "$T/cstore/"
  mount --bind "$T/cstore" "$CREPO/store"
  unmount_at_exit "$CREPO/store"
  expect_fail 14 pullback backup --repo "$CREPO" --vm vm1 --disk "vda=$URI" --json
  expect_json_error 14
  expect_err "catalog" "full"
  [ -z "$(point_ids "$CREPO")" ] || fail "a point was recorded with the catalog's disk full"
  pullback verify --repo "$CREPO" >/dev/null
  umount "$CREPO/store"
  umount "$T/small"
fi

step "file-size limit (ulimit -f): EFBIG [14], not a silent SIGXFSZ death"
randfile "$T/new.raw" "$SIZE"
start_nbdkit new file "$T/new.raw"
RC=0
(ulimit -f 64; exec "$PULLBACK_BIN" backup --repo "$REPO" --vm vm1 --disk "vda=$(nbd_uri new)") \
  >"$T/fsize.out" 2>"$T/fsize.err" || RC=$?
[ "$RC" = 14 ] || fail "backup over RLIMIT_FSIZE: exit $RC (expected 14): $(cat "$T/fsize.err")"
grep -q "^pullback: .*File too large" "$T/fsize.err" || fail "no 'File too large' message: $(cat "$T/fsize.err")"
note "exit 14: $(head -n 1 "$T/fsize.err")"
intact

step "read-only repository (read-only bind mount) [11]"
mkdir "$T/ro"
mount --bind "$REPO" "$T/ro"
unmount_at_exit "$T/ro"
mount -o remount,bind,ro "$T/ro"
expect_fail 11 pullback backup --repo "$T/ro" --vm vm1 --disk "vda=$URI" --json
expect_json_error 11
expect_err "read-only"
umount "$T/ro"
intact

step "vanished repository: absent before [3]; renamed away during the backup"
mv "$REPO" "$T/gone"
expect_fail 3 "${BK[@]}" --disk "vda=$URI"
expect_err "$REPO"
[ ! -e "$REPO" ] || fail "a failed backup created the repository"
mv "$T/gone" "$REPO"
intact
start_nbdkit slow --filter=delay file "$T/new.raw" rdelay=30ms   # 64 reads: 2 s
# A lease may be left over: the ulimit -f backup above could not write
# its release into the catalog (EFBIG too).  The next backup takes such a
# dead process's lease over, so wait for one held by another process.
lease_pid() { sqlite3 "$REPO/catalog.db" 'SELECT pid FROM lease' 2>/dev/null; }
STALE=$(lease_pid)
"${BK[@]}" --disk "vda=$(nbd_uri slow)" --json >"$T/mv.json" 2>"$T/mv.err" &
BPID=$!
track_pid "$BPID"
# Renamed once the backup holds its lease (it is then reading), however
# slowly it started (under valgrind, seconds).
lease_taken() { local p; p=$(lease_pid); [ -n "$p" ] && [ "$p" != "$STALE" ]; }
wait_for 60 "the backup's writer lease" lease_taken
pid_alive "$BPID" || fail "slow backup ended before the rename: $(cat "$T/mv.err")"
mv "$REPO" "$T/moved"
RC=0
wait "$BPID" || RC=$?
[ "$RC" = 3 ] || fail "backup whose repository was renamed: exit $RC (expected 3): $(cat "$T/mv.err")"
grep -q "^pullback: .*has vanished" "$T/mv.err" || fail "no 'vanished' message: $(cat "$T/mv.err")"
note "exit 3: $(head -n 1 "$T/mv.err")"
[ ! -e "$REPO" ] || fail "the backup recreated the repository at its old path: $(find "$REPO" | head -n 5)"
mv "$T/moved" "$REPO"
intact
stop_server slow

step "catalog write lock held by another process [10]"
"$PYTHON" -c '
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").close()
time.sleep(30)' "$REPO/catalog.db" "$T/locked" &
LPID=$!
track_pid "$LPID"
wait_for 10 "the lock holder" test -e "$T/locked"
expect_fail 10 "${BK[@]}" --disk "vda=$URI" --json
expect_json_error 10
expect_err "locked"
stop_pid "$LPID"
intact
rm -f "$T/locked"
start_nbdkit slow2 --filter=delay file "$IMG" rdelay=30ms
# --requests 1: one read at a time, so that it is still reading when the
# lock is taken
"${BK[@]}" --requests 1 --disk "vda=$(nbd_uri slow2)" >"$T/lk.out" 2>"$T/lk.err" &
BPID=$!
track_pid "$BPID"
sleep 0.5
"$PYTHON" -c '
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").close()
time.sleep(30)' "$REPO/catalog.db" "$T/locked" &
LPID=$!
track_pid "$LPID"
RC=0
wait "$BPID" || RC=$?
[ "$RC" = 10 ] || fail "backup meeting the lock at its commit: exit $RC (expected 10): $(cat "$T/lk.err")"
grep -q "^pullback: .*locked" "$T/lk.err" || fail "no 'locked' message: $(cat "$T/lk.err")"
note "lock taken during the backup: exit 10: $(head -n 1 "$T/lk.err")"
stop_pid "$LPID"
stop_server slow2
intact

step "reads fail with EIO now and then: retried, the backup succeeds"
start_nbdkit flaky --filter=error file "$IMG" error-pread-rate=10% error=EIO
"${BK[@]}" --disk "vda=$(nbd_uri flaky)" --retries 10 --json >"$T/flaky.json" 2>"$T/flaky.err"
R=$(json_get "$T/flaky.json" '.disks[0].retries')
W=$(grep -c "^pullback: warning: disk 'vda': .*Input/output error; retry [0-9]* of 10" "$T/flaky.err" || true)
note "retried $R times, $W warnings"
[ "$R" -gt 0 ] || fail "no retries reported with 10% failing reads"
[ "$W" = "$R" ] || fail "$R retries but $W warnings: $(cat "$T/flaky.err")"
PF=$(json_get "$T/flaky.json" .point)
POINTS="$POINTS $PF"
check_restore "$REPO" "$PF" vm1 vda "$IMG"
stop_server flaky
expect_fail 2 "${BK[@]}" --disk "vda=$URI" --retries -1
expect_fail 2 "${BK[@]}" --disk "vda=$URI" --retries many
expect_fail 2 "${BK[@]}" --disk "vda=$URI" --retries 1 --retries 2

step "a server whose reads always fail: --retries 0 [4]; gave up after 2 retries [4]"
start_nbdkit broken --filter=error file "$IMG" error-pread-rate=100% error=EIO
expect_fail 4 "${BK[@]}" --disk "vda=$(nbd_uri broken)" --retries 0
expect_err "Input/output error"
if grep -q "retry" "$LAST_ERR"; then fail "--retries 0 retried"; fi
expect_fail 4 "${BK[@]}" --disk "vda=$(nbd_uri broken)" --retries 2 --json
expect_json_error 4
expect_err "gave up after 2 retries" "Input/output error"
[ "$(grep -c "^pullback: warning: .*retry" "$LAST_ERR")" = 2 ] || fail "expected 2 retry warnings"
stop_server broken
intact

step "hostile server: short reads (nbdkit sh plugin) [4]"
cat >"$T/short.sh" <<'EOF'
case "$1" in
  get_size) echo 4194304 ;;
  pread) head -c $(($3 / 2)) /dev/zero | tr '\0' x ;;
  *) exit 2 ;;
esac
EOF
chmod +x "$T/short.sh"
start_nbdkit short sh "$T/short.sh"
expect_fail 4 "${BK[@]}" --disk "vda=$(nbd_uri short)" --retries 1
stop_server short
intact

# backup_reading OUT ERR BACKUP-OPTIONS...: a backup from a slow, logging
# nbdkit "kill" in the background ($BPID), returned once it is reading
# (however slowly it started: under valgrind, seconds), so that stopping
# the server then makes it lose the server mid-way.
backup_reading() {
  local out=$1 err=$2
  shift 2
  rm -f "$T/kill.log"
  start_nbdkit kill --filter=log --filter=delay file "$IMG" rdelay=30ms logfile="$T/kill.log"
  "${BK[@]}" --disk "vda=$(nbd_uri kill)" "$@" >"$out" 2>"$err" &
  BPID=$!
  track_pid "$BPID"
  wait_for 60 "the backup's first reads" grep -q "Read id=" "$T/kill.log"
  pid_alive "$BPID" || fail "slow backup ended before the server was stopped: $(cat "$err")"
}

# SIGKILL: the connection drops.  SIGTERM: nbdkit first answers every
# request with ESHUTDOWN while the connection stays up.
for sig in KILL TERM; do
  step "server stopped by SIG$sig mid-backup, restarted on the same socket: reconnected"
  backup_reading "$T/kill.json" "$T/kill.err" --retries 5 --json
  kill -$sig "$(server_pid kill)"
  stop_server kill
  start_nbdkit kill --filter=delay file "$IMG" rdelay=30ms
  RC=0
  wait "$BPID" || RC=$?
  [ "$RC" = 0 ] || fail "backup across a server restart (SIG$sig): exit $RC: $(cat "$T/kill.err")"
  note "$(grep -c warning "$T/kill.err") warnings, first: $(head -n 1 "$T/kill.err")"
  [ "$(json_get "$T/kill.json" '.disks[0].retries')" -gt 0 ] || fail "no retry reported"
  PK=$(json_get "$T/kill.json" .point)
  POINTS="$POINTS $PK"
  check_restore "$REPO" "$PK" vm1 vda "$IMG"
  stop_server kill
done

step "killed and not restarted: exit 4 after the retries, no point"
backup_reading "$T/dead.out" "$T/dead.err" --retries 2
stop_server kill
RC=0
wait "$BPID" || RC=$?
[ "$RC" = 4 ] || fail "backup whose server died: exit $RC (expected 4): $(cat "$T/dead.err")"
grep -q "^pullback: .*gave up after 2 retries" "$T/dead.err" || fail "no 'gave up': $(cat "$T/dead.err")"
note "exit 4: $(grep "^pullback: " "$T/dead.err" | tail -n 1)"
intact

step "after all that: point 1 restores bit-exact, a normal backup works"
check_restore "$REPO" "$P1" vm1 vda "$T/p1.raw"
"${BK[@]}" --disk "vda=$URI" --json >"$T/last.json"
POINTS="$POINTS $(json_get "$T/last.json" .point)"
intact
echo PASS
