#!/bin/bash
# test-crash.sh - atomic points: a backup, forget (+ gc), gc or restore
# killed with SIGKILL at a random moment never damages the repository.
#
# Trials (CRASH_TRIALS, default 30; CRASH_SEED replays a run): each one
# changes the disk (random data at random 64 KiB-aligned offsets), then
# runs one operation chosen at random (backup 60%: incremental since the
# newest point's checkpoint, else full; forget --keep-last 2-4 --gc 15%;
# gc 10%; restore 15%) and kills it after a random delay between 0 and
# 1.3x that operation's last uninterrupted duration (so every phase is
# hit: start-up, connect, reading, chunk writes, record, commit, after).
#
# Proves, after every trial:
#  - the repository opens and lists; no partial point is ever listed: every
#    listed point is either an earlier one or the killed backup's, complete;
#  - verify passes (every chunk and node of every point, the records, the
#    catalog's integrity);
#  - the newest point and one other point chosen at random restore
#    bit-exact against the disk as it was when they were taken (so a killed
#    backup never advanced a checkpoint: the next incremental still sees
#    every write since the last *committed* one);
#  - a killed restore leaves either no target or a complete, exact one, and
#    the next restore to that target removes the temporary image it left
#    (unless fresh or held by a running restore);
# and at the end: an uninterrupted backup works, after a killed full
# backup the next one reuses the chunks the killed one wrote, every point
# restores bit-exact, and gc removes every temporary file the killed
# writers left, after which nothing is reclaimable.
# The long run: CRASH_TRIALS=500 make check TESTS=tests/test-crash.sh
# (README "Long runs").
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3

TRIALS=${CRASH_TRIALS:-30}
SEED=${CRASH_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$SEED
note "trials: $TRIALS, seed: $SEED (CRASH_SEED=$SEED replays this run)"

REPO=$T/repo IMG=$T/disk.qcow2 SIZE=$((48 * M)) EXP=$T/expected
mkdir -p "$EXP"
declare -A KILLED=() SURVIVED=()

start_server() { # [bitmap]
  start_qemu_nbd vda -r -f qcow2 ${1:+-B "$1"} "$IMG"
}

# The newest point of vm a and its checkpoint ("" if none).
newest() {
  pullback list --repo "$REPO" --vm a --json >"$T/newest.json"
  json_py "$T/newest.json" '(lambda p: "%s %s" % (p[-1]["id"], p[-1].get("checkpoint") or "") if p else "")(d["points"])'
}

# Random writes: 1 to 3 extents of 64 KiB to 1 MiB, random data.
change_disk() {
  local n=$((1 + RANDOM % 3)) i off len cmds=()
  for ((i = 0; i < n; i++)); do
    off=$(( (RANDOM % (SIZE / (64 * K))) * 64 * K ))
    len=$(( (1 + RANDOM % 16) * 64 * K ))
    [ $((off + len)) -le "$SIZE" ] || len=$((SIZE - off))
    cmds+=("write -s $T/pool.$((RANDOM % 4)) $off $len")
  done
  qio "$IMG" qcow2 "${cmds[@]}"
}

# The backup command line for the next point (incremental when possible).
BK_ARGS=() BK_BITMAP= BK_CP=
plan_backup() {
  local nw cp
  nw=$(newest)
  cp=${nw#* }
  [ "$nw" = "$cp" ] && cp=
  BK_CP=cp$((++CP_SEQ))
  qemu-img bitmap --add --enable -f qcow2 "$IMG" "$BK_CP"
  if [ -n "$nw" ] && [ -n "$cp" ]; then
    BK_BITMAP=$cp BK_ARGS=(--since "$cp" --bitmap "vda=$cp" --checkpoint "$BK_CP")
  else
    BK_BITMAP= BK_ARGS=(--checkpoint "$BK_CP")
  fi
}

# Only the newest point's bitmap is needed by the next incremental.
prune_bitmaps() {
  local keep=${1:-} b
  for b in $(qemu-img info --output=json -f qcow2 "$IMG" | json_py /dev/stdin \
      '" ".join(b["name"] for b in d.get("format-specific", {}).get("data", {}).get("bitmaps", []))'); do
    [ "$b" = "$keep" ] || qemu-img bitmap --remove -f qcow2 "$IMG" "$b"
  done
}

# Run OP's command "$@" and SIGKILL it after a random delay between 0 and
# 1.3x EST[OP], the duration of OP's last run that finished by itself
# (times 1.5 for every kill since): 0 if it was killed, 1 if it finished.
declare -A EST=()
run_and_kill() {
  local op=$1 delay t0 rc
  shift
  delay=$(awk -v m="${EST[$op]}" -v r="$RANDOM" 'BEGIN {d = 1.3 * m * r / 32767; printf "%.3f", d < 0.001 ? 0.001 : d}')
  t0=$(date +%s.%N)
  # In a subshell, so that bash does not report the kill on stderr.
  rc=$( (timeout -s KILL "$delay" "$@" >"$T/op.out" 2>"$T/op.err"; echo $?) 2>/dev/null )
  if [ "$rc" = 137 ]; then
    # Killed: widen the window, so that later phases get their turn.
    EST[$op]=$(awk -v m="${EST[$op]}" 'BEGIN {print 1.5 * m}')
    return 0
  fi
  [ "$rc" = 0 ] || fail "$op failed by itself (exit $rc): $* : $(cat "$T/op.err")"
  EST[$op]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
  return 1
}

secs_of() { # CMD...: wall seconds it takes
  local t0
  t0=$(date +%s.%N)
  "$@" >/dev/null
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}'
}

# Expected content of every listed point; drop those no longer listed.
check_points() {
  local ids p
  ids=$(point_ids "$REPO")
  for p in $ids; do
    [ -f "$EXP/$p.raw" ] || fail "point $p is listed but no backup of it completed or was killed"
  done
  for p in "$EXP"/*.raw; do
    [ -e "$p" ] || continue
    p=$(basename "$p" .raw)
    [[ " $ids " == *" $p "* ]] || rm -f "$EXP/$p.raw"
  done
  echo "$ids"
}

restore_check() { # POINT
  rm -f "$T/r.raw"
  pullback restore --repo "$REPO" --point "$1" --vm a --disk vda --to "$T/r.raw" >/dev/null
  cmp -s "$T/r.raw" "$EXP/$1.raw" || fail "point $1 does not restore bit-exact"
  rm -f "$T/r.raw"
}

after_trial() {
  local ids arr pick
  ids=$(check_points)
  pullback verify --repo "$REPO" --json >"$T/verify.json" ||
    fail "verify failed after trial $trial: $(cat "$T/verify.json")"
  [ -n "$ids" ] || return 0
  read -r -a arr <<<"$ids"
  restore_check "${arr[-1]}"
  pick=${arr[$((RANDOM % ${#arr[@]}))]}
  [ "$pick" = "${arr[-1]}" ] || restore_check "$pick"
}

# ---- the operations ----

op_backup() {
  local before after new
  before=$(point_ids "$REPO")
  plan_backup
  save_raw "$IMG" qcow2 "$T/state.raw"
  start_server "$BK_BITMAP"
  if run_and_kill backup "$PULLBACK_BIN" backup --repo "$REPO" --vm a --disk "vda=$(nbd_uri vda)" "${BK_ARGS[@]}" --json; then
    KILLED[backup]=$(( ${KILLED[backup]:-0} + 1 ))
  else
    SURVIVED[backup]=$(( ${SURVIVED[backup]:-0} + 1 ))
  fi
  stop_server vda
  after=$(point_ids "$REPO")
  new=$(comm -13 <(tr ' ' '\n' <<<"$before" | sort) <(tr ' ' '\n' <<<"$after" | sort) | tr -d ' ')
  [ "$(wc -w <<<"$new")" -le 1 ] || fail "one backup added several points: $new"
  if [ -n "$new" ]; then
    mv "$T/state.raw" "$EXP/$new.raw"
    COMMITTED=$((COMMITTED + 1))
  fi
  prune_bitmaps "$(newest | cut -s -d' ' -f2)"
}

op_forget() {
  local keep=$((2 + RANDOM % 3))
  if run_and_kill forget "$PULLBACK_BIN" forget --repo "$REPO" --keep-last "$keep" --gc --json; then
    KILLED[forget]=$(( ${KILLED[forget]:-0} + 1 ))
  else
    SURVIVED[forget]=$(( ${SURVIVED[forget]:-0} + 1 ))
  fi
}

op_gc() {
  if run_and_kill gc "$PULLBACK_BIN" gc --repo "$REPO" --json; then
    KILLED[gc]=$(( ${KILLED[gc]:-0} + 1 ))
  else
    SURVIVED[gc]=$(( ${SURVIVED[gc]:-0} + 1 ))
  fi
}

op_restore() {
  local ids arr p
  ids=$(point_ids "$REPO")
  [ -n "$ids" ] || return 0
  read -r -a arr <<<"$ids"
  p=${arr[$((RANDOM % ${#arr[@]}))]}
  rm -f "$T/k.raw"
  if run_and_kill restore "$PULLBACK_BIN" restore --repo "$REPO" --point "$p" --vm a --disk vda --to "$T/k.raw"; then
    KILLED[restore]=$(( ${KILLED[restore]:-0} + 1 ))
  else
    SURVIVED[restore]=$(( ${SURVIVED[restore]:-0} + 1 ))
  fi
  if [ -e "$T/k.raw" ]; then
    cmp -s "$T/k.raw" "$EXP/$p.raw" || fail "a killed restore left an incomplete or wrong target"
    RESTORE_DONE=$((RESTORE_DONE + 1))
  fi
  RESTORE_TMP=$((RESTORE_TMP + $(find "$T" -maxdepth 1 -name '.k.raw.pullback-*' | wc -l)))
  rm -f "$T/k.raw" "$T"/.k.raw.pullback-*
}

# ---- set-up: data pool, first points, timings ----

step "set-up: a 48 MiB disk, a full and an incremental point, timings"
for i in 0 1 2 3; do randfile "$T/pool.$i" $((1 * M)); done
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
qio "$IMG" qcow2 "write -s $T/pool.0 0 $M" "write -P 0x5a $((8 * M)) $((4 * M))"
randfile "$T/big" $((16 * M))
qio "$IMG" qcow2 "write -s $T/big $((16 * M)) $((16 * M))"
pullback init --repo "$REPO" >/dev/null
CP_SEQ=0 COMMITTED=0 RESTORE_DONE=0 RESTORE_TMP=0
plan_backup
save_raw "$IMG" qcow2 "$T/state.raw"
start_server
T_BACKUP=$(secs_of pullback backup --repo "$REPO" --vm a --disk "vda=$(nbd_uri vda)" "${BK_ARGS[@]}")
stop_server vda
mv "$T/state.raw" "$EXP/$(newest | cut -d' ' -f1).raw"
prune_bitmaps "$BK_CP"
T_RESTORE=$(secs_of pullback restore --repo "$REPO" --point latest --vm a --disk vda --to "$T/t.raw")
rm -f "$T/t.raw"
T_FORGET=$(secs_of pullback forget --repo "$REPO" --keep-last 10 --gc)
note "a full backup takes ${T_BACKUP}s, a restore ${T_RESTORE}s, forget --gc ${T_FORGET}s"
EST=([backup]=$T_BACKUP [restore]=$T_RESTORE [forget]=$T_FORGET [gc]=$T_FORGET)

step "temporary images of killed restores are removed by the next restore"
# Stand-ins for what killed restores leave: an old unlocked one (stale),
# a fresh one (maybe a restore that has not locked it yet) and an old one
# held by a running restore (flock), all as .k.raw.pullback-XXXXXX.
: >"$T/.k.raw.pullback-AAAAAA"; touch -d '10 minutes ago' "$T/.k.raw.pullback-AAAAAA"
: >"$T/.k.raw.pullback-BBBBBB"
: >"$T/.k.raw.pullback-CCCCCC"; touch -d '10 minutes ago' "$T/.k.raw.pullback-CCCCCC"
: >"$T/.other.raw.pullback-DDDDDD"; touch -d '10 minutes ago' "$T/.other.raw.pullback-DDDDDD"
flock "$T/.k.raw.pullback-CCCCCC" sleep 60 &
FLOCK_PID=$!
track_pid "$FLOCK_PID"
wait_for 10 "the flock holder" pid_alive "$FLOCK_PID"
sleep 0.2
pullback restore --repo "$REPO" --point latest --vm a --disk vda --to "$T/k.raw" --json >"$T/kr.json"
[ "$(json_get "$T/kr.json" .temp_removed)" = 1 ] || fail "temp_removed: $(cat "$T/kr.json")"
[ ! -e "$T/.k.raw.pullback-AAAAAA" ] || fail "the stale temporary image is still there"
[ -e "$T/.k.raw.pullback-BBBBBB" ] && [ -e "$T/.k.raw.pullback-CCCCCC" ] &&
  [ -e "$T/.other.raw.pullback-DDDDDD" ] || fail "a fresh, a locked or another target's temporary image was removed"
kill "$FLOCK_PID"
rm -f "$T/k.raw" "$T"/.k.raw.pullback-* "$T/.other.raw.pullback-DDDDDD"

step "a killed full backup: the next one reuses what it wrote"
# A slow server (nbdkit, 20 ms per read) so that the kill lands half-way:
# once the store holds 20 objects.
B2=$T/repo2
pullback init --repo "$B2" >/dev/null
save_raw "$IMG" qcow2 "$T/slow.raw"
start_nbdkit slow --filter=delay file "$T/slow.raw" rdelay=20ms
"$PULLBACK_BIN" backup --repo "$B2" --vm a --disk "vda=$(nbd_uri slow)" >/dev/null 2>&1 &
BPID=$!
objects_at_least() { [ "$(store_objects "$1")" -ge "$2" ]; }
wait_for 30 "20 objects in the store" objects_at_least "$B2" 20
kill -KILL "$BPID"
wait "$BPID" 2>/dev/null && fail "the slow backup finished before it was killed"
[ -z "$(point_ids "$B2")" ] || fail "a killed backup recorded a point"
WRITTEN=$(store_objects "$B2")
# A new server: nbdkit 1.32 can abort (connections.c "Assertion `sock >=
# 0' failed") when a client dies with several reads in flight, as the
# killed backup had.  What is tested is the repository, not nbdkit.
stop_server slow
start_nbdkit slow --filter=delay file "$T/slow.raw" rdelay=20ms
pullback backup --repo "$B2" --vm a --disk "vda=$(nbd_uri slow)" --json >"$T/reuse.json"
stop_server slow
NEW=$(json_get "$T/reuse.json" .disks[0].chunks_new)
DATA=$(data_chunks "$T/slow.raw" $((256 * K)))
note "the killed backup left $WRITTEN objects; the next one wrote $NEW of $DATA data chunks"
[ "$NEW" -le $((DATA - WRITTEN + 8)) ] || fail "the next backup did not reuse the killed one's chunks"
pullback verify --repo "$B2" >/dev/null
rm -rf "$B2" "$T/slow.raw"

# ---- the trials ----

for ((trial = 1; trial <= TRIALS; trial++)); do
  change_disk
  r=$((RANDOM % 100))
  if ((r < 60)); then op=backup; elif ((r < 75)); then op=forget
  elif ((r < 85)); then op=gc; else op=restore; fi
  "op_$op"
  after_trial
  ((trial % 10 == 0)) && note "trial $trial: killed ${KILLED[*]:-} / finished ${SURVIVED[*]:-}; points $(point_ids "$REPO")"
done

step "the end: an uninterrupted backup, every point restores, gc leaves nothing"
change_disk
op_backup_plain() {
  plan_backup
  save_raw "$IMG" qcow2 "$T/state.raw"
  start_server "$BK_BITMAP"
  pullback backup --repo "$REPO" --vm a --disk "vda=$(nbd_uri vda)" "${BK_ARGS[@]}" --json >"$T/last.json"
  stop_server vda
  mv "$T/state.raw" "$EXP/$(json_get "$T/last.json" .point).raw"
}
op_backup_plain
for p in $(check_points); do restore_check "$p"; done
pullback verify --repo "$REPO" >/dev/null
tmp_left=$(find "$REPO" -name '.tmp.*' | wc -l)
sleep 1     # gc removes temporary files older than its start (to the second)
pullback gc --repo "$REPO" --json >"$T/gc.json"
[ "$(json_get "$T/gc.json" .temp_removed)" = "$tmp_left" ] ||
  fail "gc removed $(json_get "$T/gc.json" .temp_removed) temporary files, $tmp_left were there"
[ "$(find "$REPO" -name '.tmp.*' | wc -l)" = 0 ] || fail "temporary files left after gc"
pullback stats --repo "$REPO" --json >"$T/stats.json"
[ "$(json_get "$T/stats.json" .reclaimable_chunks)" = 0 ] || fail "gc left reclaimable chunks"

for op in backup forget gc restore; do
  note "$op: ${KILLED[$op]:-0} killed, ${SURVIVED[$op]:-0} finished before the kill"
done
note "$TRIALS trials (seed $SEED): $COMMITTED backups committed, $RESTORE_DONE killed restores had completed; 0 failures; $tmp_left temporary files left in the store and $RESTORE_TMP beside restore targets by killed writers"
step "ok"
