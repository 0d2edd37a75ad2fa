#!/bin/bash
# test-concurrent.sh - backups of several VMs, forget and gc running at the
# same time on one repository; per-VM writer leases; killed backups.
#
# Proves:
#  - three backups of three VMs (each its own qemu-nbd, throttled so that a
#    backup lasts a second or two; three images of different sizes sharing
#    data, and in later rounds bringing back content that only forgotten
#    points held) run at once while a forget --keep-last 1 (+ gc, or
#    forget --gc) loop removes older points and collects garbage, for 4
#    rounds: every backup succeeds and is incremental on its VM's previous
#    point, every point made is either still listed or was reported removed
#    by a forget, the newest point of every VM survives, verify passes and
#    every remaining point restores bit-exact against the image it was taken
#    from; after a final gc stats shows nothing reclaimable;
#  - a second backup of the SAME VM while one runs is refused [10] (class
#    "busy", "another backup", the VM named), also as a full backup, while a
#    backup of another VM at the same time succeeds; forget --point of the
#    running backup's base is refused [10] and a policy run keeps it ("in
#    use"); a gc meanwhile keeps the garbage the running backup is reusing
#    (chunks of a forgotten, not yet collected point: in_use, none
#    deleted); the first backup still succeeds and restores exactly;
#  - a backup killed with SIGKILL records no point and blocks nothing: gc
#    clears its stale lease (leases_cleared 1) and removes what it wrote
#    (the store holds exactly the objects it held before), and the next
#    backup of that VM - right after the kill, without a gc - succeeds and
#    is incremental; verify passes.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3

R=$T/repo ROUNDS=4
VMS=(c1 c2 c3)
declare -A SIZE=([c1]=$((32 * M)) [c2]=$((40 * M)) [c3]=$((48 * M)))
declare -A RAW    # point id -> raw image it must restore to
declare -A LAST   # VM -> its newest point
declare -A VMOF   # point id -> VM
CREATED=()        # every point made
REMOVED=()        # every point a forget reported removed

# start_slow_nbd NAME BYTES_PER_SECOND IMAGE [qemu-nbd options...]: like
# start_qemu_nbd NAME -r -f qcow2 IMAGE, reads throttled (a throttle filter
# node over the qcow2; the qcow2's bitmaps are still exported with -B).
start_slow_nbd() {
  local name=$1 bps=$2 img=$3
  shift 3
  start_qemu_nbd "$name" -r "$@" --object "throttle-group,id=tg0,x-bps-read=$bps" \
    --image-opts "driver=throttle,throttle-group=tg0,file.driver=qcow2,file.file.driver=file,file.file.filename=$img"
}

# record VM JSON RAWFILE: a successful backup's point.
record() {
  local p
  p=$(json_get "$2" .point)
  RAW[$p]=$3 LAST[$1]=$p VMOF[$p]=$1
  CREATED+=("$p")
}

img() { echo "$T/$1.qcow2"; }

pullback init --repo "$R" --chunk-size 64K
randfile "$T/S" $((2 * M))
randfile "$T/R1" $((1 * M))
randfile "$T/R2" $((1 * M))
for vm in "${VMS[@]}"; do
  qemu-img create -q -f qcow2 "$(img "$vm")" "${SIZE[$vm]}"
done

NFORGET=0
for ((r = 1; r <= ROUNDS; r++)); do
  step "round $r: writes, then 3 backups at once with a forget/gc loop"
  randfile "$T/D$r" $((1 * M))
  for vm in "${VMS[@]}"; do
    randfile "$T/U-$vm-$r" $((1 * M))
    w=("write -s $T/U-$vm-$r $((12 * M)) $((1 * M))" "write -s $T/D$r $((16 * M)) $((1 * M))")
    # region A: R1 in odd rounds, R2 in even ones - content that, from round
    # 3 on, only the points the loop is forgetting right now hold
    if ((r % 2)); then w+=("write -s $T/R1 $((8 * M)) $((1 * M))"); else w+=("write -s $T/R2 $((8 * M)) $((1 * M))"); fi
    if ((r == 1)); then
      i=${vm#c}
      w+=("write -s $T/S $(((i - 1) * 256 * K)) $((2 * M))" "write -P 0x7$i $((SIZE[$vm] - 64 * K)) $((64 * K))")
    fi
    qio "$(img "$vm")" qcow2 "${w[@]}"
    qemu-img bitmap --add --enable -f qcow2 "$(img "$vm")" "r$r"
    save_raw "$(img "$vm")" qcow2 "$T/$vm-r$r.raw"
    if ((r == 1)); then
      start_slow_nbd "$vm" $((2 * M)) "$(img "$vm")"
    else
      start_slow_nbd "$vm" $((2 * M)) "$(img "$vm")" -B "r$((r - 1))"
    fi
  done
  pids=()
  for vm in "${VMS[@]}"; do
    inc=()
    ((r == 1)) || inc=(--since "r$((r - 1))" --bitmap "vda=r$((r - 1))")
    "$PULLBACK_BIN" backup --repo "$R" --vm "$vm" --disk "vda=$(nbd_uri "$vm")" "${inc[@]}" \
      --checkpoint "r$r" --json >"$T/b-$vm-$r.json" 2>"$T/b-$vm-$r.err" &
    pids+=($!)
    track_pid "$!"
  done
  it=0
  while :; do
    alive=0
    for p in "${pids[@]}"; do
      if pid_alive "$p"; then alive=1; fi
    done
    ((it > 0 && alive == 0)) && break
    it=$((it + 1))
    f=$T/forget-$r-$it.json
    if ((it % 2)); then
      pullback forget --repo "$R" --keep-last 1 --gc --json >"$f" ||
        fail "forget --keep-last 1 --gc during backups failed: $(cat "$f")"
      [ "$(json_get "$f" .gc)" != null ] || fail "forget --gc: gc null"
    else
      pullback forget --repo "$R" --keep-last 1 --json >"$f" ||
        fail "forget --keep-last 1 during backups failed: $(cat "$f")"
      pullback gc --repo "$R" --json >"$T/gc-$r-$it.json" ||
        fail "gc during backups failed: $(cat "$T/gc-$r-$it.json")"
    fi
    read -ra rm_now <<<"$(json_ids "$f" removed)"
    REMOVED+=("${rm_now[@]}")
  done
  NFORGET=$((NFORGET + it))
  i=0
  for vm in "${VMS[@]}"; do
    rc=0
    wait "${pids[i]}" || rc=$?
    i=$((i + 1))
    [ "$rc" = 0 ] || fail "round $r: backup of $vm exit $rc: $(cat "$T/b-$vm-$r.err")"
    j=$T/b-$vm-$r.json
    if ((r == 1)); then
      [ "$(json_get "$j" .mode)" = full ] || fail "round 1 backup of $vm: mode"
    else
      [ "$(json_get "$j" .mode)" = incremental ] || fail "round $r backup of $vm: mode $(json_get "$j" .mode)"
      [ "$(json_get "$j" .parent)" = "${LAST[$vm]}" ] ||
        fail "round $r backup of $vm: parent $(json_get "$j" .parent), expected ${LAST[$vm]}"
    fi
    note "$vm: point $(json_get "$j" .point) in $(json_get "$j" .seconds) s"
    record "$vm" "$j" "$T/$vm-r$r.raw"
    stop_server "$vm"
  done
  note "round $r: $it forget/gc passes ran during the backups; removed so far: ${REMOVED[*]:-none}"
done

step "nothing lost: every point made is listed or was reported removed"
LISTED=$(point_ids "$R")
"$PYTHON" - "${CREATED[*]}" "$LISTED" "${REMOVED[*]:-}" <<'EOF' || fail "points lost or duplicated"
import sys
created, listed, removed = (s.split() for s in sys.argv[1:4])
print("created", created, "listed", listed, "removed", removed)
bad = []
if len(set(removed)) != len(removed): bad.append("a point was removed twice")
if set(listed) & set(removed): bad.append("removed yet listed: %s" % (set(listed) & set(removed)))
if set(listed) | set(removed) != set(created): bad.append("lost: %s, unknown: %s" % (
    set(created) - set(listed) - set(removed), (set(listed) | set(removed)) - set(created)))
sys.exit("; ".join(bad) if bad else 0)
EOF
for vm in "${VMS[@]}"; do
  grep -qw "${LAST[$vm]}" <<<"$LISTED" || fail "the newest point ${LAST[$vm]} of $vm is gone"
done
[ "${#REMOVED[@]}" -ge $((2 * ${#VMS[@]})) ] ||
  fail "the forget loop removed only ${#REMOVED[@]} points (rounds 1 and 2 at least: $((2 * ${#VMS[@]})))"
note "$NFORGET forget passes; ${#REMOVED[@]} points removed; listed: $LISTED"

final_checks() {
  local p
  pullback gc --repo "$R" --json >"$T/gc-final.json"
  cat "$T/gc-final.json"
  [ "$(json_get "$T/gc-final.json" .in_use)" = 0 ] || fail "gc: in_use with no backup running"
  pullback stats --repo "$R" --json >"$T/stats.json"
  cat "$T/stats.json"
  [ "$(json_get "$T/stats.json" .reclaimable_chunks)" = 0 ] && [ "$(json_get "$T/stats.json" .reclaimable_bytes)" = 0 ] ||
    fail "stats after gc: something reclaimable"
  pullback verify --repo "$R" --json >"$T/verify.json"
  [ "$(json_get "$T/verify.json" .ok)" = true ] || fail "verify: $(cat "$T/verify.json")"
  for p in $(point_ids "$R"); do
    check_restore "$R" "$p" "${VMOF[$p]}" vda "${RAW[$p]}"
  done
}
final_checks

step "garbage a backup is about to reuse: point Z of VM cz holds 1 MiB G, forgotten, not yet collected"
randfile "$T/G" $((1 * M))
qemu-img create -q -f qcow2 "$T/z.qcow2" $((8 * M))
qio "$T/z.qcow2" qcow2 "write -s $T/G 0 $((1 * M))"
start_qemu_nbd z -r -f qcow2 "$T/z.qcow2"
pullback backup --repo "$R" --vm cz --disk "vda=$(nbd_uri z)" --json >"$T/z.json"
stop_server z
Z=$(json_get "$T/z.json" .point)
pullback forget --repo "$R" --point "$Z" --json >"$T/fz.json"
[ "$(json_get "$T/fz.json" .removed)" = "[$Z]" ] || fail "forget --point $Z"

step "two backups of c1 at once: the second is refused [10]; base in use [10]; gc keeps pinned garbage"
# G first (read within the first second), then 4 MiB more: ~5 s at 1 MiB/s
qio "$(img c1)" qcow2 "write -s $T/G $((20 * M)) $((1 * M))" "write -s $T/U-c2-1 $((21 * M)) $((1 * M))" \
  "write -s $T/U-c3-1 $((22 * M)) $((1 * M))" "write -s $T/U-c1-2 $((23 * M)) $((1 * M))" \
  "write -s $T/U-c1-1 $((24 * M)) $((1 * M))"
qemu-img bitmap --add --enable -f qcow2 "$(img c1)" r5
save_raw "$(img c1)" qcow2 "$T/c1-r5.raw"
# Under valgrind every refused command below takes seconds: slower still,
# so that the backup is certainly running throughout.
if [ "${PULLBACK_VALGRIND:-0}" = 1 ]; then SLOW_RATE=$((128 * K)); else SLOW_RATE=$((1 * M)); fi
start_slow_nbd c1 "$SLOW_RATE" "$(img c1)" -B r4
BASE=${LAST[c1]}
POINTS=$(point_ids "$R")
"$PULLBACK_BIN" backup --repo "$R" --vm c1 --disk "vda=$(nbd_uri c1)" --since r4 --bitmap vda=r4 \
  --checkpoint r5 --json >"$T/slow.json" 2>"$T/slow.err" &
SLOW=$!
track_pid "$SLOW"
sleep 1
pid_alive "$SLOW" || fail "the slow backup ended within 1 s: $(cat "$T/slow.err")"
expect_fail 10 pullback backup --repo "$R" --vm c1 --disk "vda=$(nbd_uri c1)" --since r4 --bitmap vda=r4 --checkpoint r5
expect_err "another backup" c1
expect_fail 10 pullback backup --repo "$R" --vm c1 --disk "vda=$(nbd_uri c1)" --json
expect_json_error 10
[ "$(json_get "$LAST_OUT" .error.class)" = busy ] || fail "class of the refusal: $(json_get "$LAST_OUT" .error.class)"
grep -qi "another backup" "$LAST_OUT" || fail "JSON message lacks 'another backup'"
expect_fail 10 pullback forget --repo "$R" --point "$BASE"
expect_fail 10 pullback forget --repo "$R" --point "$BASE" --json
expect_json_error 10
pullback forget --repo "$R" --vm c1 --keep-last 0 --dry-run --json >"$T/inuse.json"
cat "$T/inuse.json"
json_py "$T/inuse.json" "$BASE in d['kept'] and any('in use' in r for r in next(e for e in d['points'] if e['point'] == $BASE)['reasons'])" |
  grep -qx true || fail "a policy run does not keep the running backup's base $BASE with reason \"in use\""
# another VM meanwhile: not blocked
qemu-img bitmap --add --enable -f qcow2 "$(img c2)" r5
save_raw "$(img c2)" qcow2 "$T/c2-r5.raw"
start_qemu_nbd c2 -r -f qcow2 -B r4 "$(img c2)"
pullback backup --repo "$R" --vm c2 --disk "vda=$(nbd_uri c2)" --since r4 --bitmap vda=r4 --checkpoint r5 --json >"$T/c2-5.json"
stop_server c2
[ "$(json_get "$T/c2-5.json" .mode)" = incremental ] || fail "c2 beside the running c1 backup: mode"
record c2 "$T/c2-5.json" "$T/c2-r5.raw"
sleep 1 # the backup has read G by now (a dedup hit on garbage: it pins G's chunks)
pullback gc --repo "$R" --json >"$T/gc-during.json"
cat "$T/gc-during.json"
pid_alive "$SLOW" || fail "the slow backup ended before the checks were done: they prove nothing"
IN_USE=$(json_get "$T/gc-during.json" .in_use)
[ "$IN_USE" -ge $((1 * M / (64 * K))) ] ||
  fail "gc while a running backup reuses the 16 chunks of forgotten G: in_use $IN_USE"
[ "$(json_get "$T/gc-during.json" .chunks_deleted)" = 0 ] || fail "gc deleted chunks of G while a backup used them"
RC=0
wait "$SLOW" || RC=$?
[ "$RC" = 0 ] || fail "the first backup of c1 failed (exit $RC): $(cat "$T/slow.err")"
cat "$T/slow.json"
[ "$(json_get "$T/slow.json" .mode)" = incremental ] && [ "$(json_get "$T/slow.json" .parent)" = "$BASE" ] ||
  fail "the first backup of c1: mode/parent"
record c1 "$T/slow.json" "$T/c1-r5.raw"
stop_server c1
grep -qw "$BASE" <<<"$(point_ids "$R")" || fail "the base $BASE is gone"
pullback gc --repo "$R" --json >"$T/gc-after.json"
cat "$T/gc-after.json"
[ "$(json_get "$T/gc-after.json" .in_use)" = 0 ] && [ "$(json_get "$T/gc-after.json" .chunks_deleted)" = 0 ] ||
  fail "gc after the backup that took G over"
pullback verify --repo "$R"
check_restore "$R" "${LAST[c1]}" c1 vda "$T/c1-r5.raw"

step "a backup of c2 killed with SIGKILL: gc clears the stale lease and what it wrote"
randfile "$T/K2" $((4 * M)) # new data: what the killed backup stores is garbage
qio "$(img c2)" qcow2 "write -s $T/K2 $((20 * M)) $((4 * M))"
qemu-img bitmap --add --enable -f qcow2 "$(img c2)" r6
save_raw "$(img c2)" qcow2 "$T/c2-r6.raw"
pullback gc --repo "$R" >/dev/null
O0=$(store_objects "$R") POINTS=$(point_ids "$R")
start_slow_nbd c2 $((1 * M)) "$(img c2)" -B r5
"$PULLBACK_BIN" backup --repo "$R" --vm c2 --disk "vda=$(nbd_uri c2)" --since r5 --bitmap vda=r5 \
  --checkpoint r6 >"$T/kill.out" 2>"$T/kill.err" &
KPID=$!
track_pid "$KPID"
sleep 2
pid_alive "$KPID" || fail "the backup to kill ended within 2 s: $(cat "$T/kill.err")"
O1=$(store_objects "$R")
kill -KILL "$KPID"
note "store: $O0 objects before the backup, $O1 when it was killed"
[ "$O1" -gt "$O0" ] || fail "the backup killed after 2 s had stored nothing: the test proves nothing"
RC=0
wait "$KPID" || RC=$?
[ "$RC" = 137 ] || fail "killed backup: exit $RC"
stop_server c2
[ "$(point_ids "$R")" = "$POINTS" ] || fail "a killed backup recorded a point"
note "store: $O0 objects before, $(store_objects "$R") after the killed backup"
pullback gc --repo "$R" --json >"$T/gc-kill.json"
cat "$T/gc-kill.json"
[ "$(json_get "$T/gc-kill.json" .leases_cleared)" = 1 ] || fail "gc did not clear the killed backup's lease"
[ "$(json_get "$T/gc-kill.json" .in_use)" = 0 ] || fail "gc: in_use after the lease was cleared"
[ "$(store_objects "$R")" = "$O0" ] || fail "after gc the store holds $(store_objects "$R") objects, $O0 before the killed backup"
pullback verify --repo "$R"
start_qemu_nbd c2 -r -f qcow2 -B r5 "$(img c2)"
pullback backup --repo "$R" --vm c2 --disk "vda=$(nbd_uri c2)" --since r5 --bitmap vda=r5 --checkpoint r6 --json >"$T/c2-6.json"
stop_server c2
[ "$(json_get "$T/c2-6.json" .mode)" = incremental ] && [ "$(json_get "$T/c2-6.json" .parent)" = "${LAST[c2]}" ] ||
  fail "the backup after the killed one: mode/parent"
record c2 "$T/c2-6.json" "$T/c2-r6.raw"

step "a backup of c3 killed with SIGKILL: the next backup of c3 goes ahead at once"
randfile "$T/K3" $((3 * M))
qio "$(img c3)" qcow2 "write -s $T/K3 $((30 * M)) $((3 * M))" "write -P 0x99 $((40 * M)) $((2 * M))"
qemu-img bitmap --add --enable -f qcow2 "$(img c3)" r5
save_raw "$(img c3)" qcow2 "$T/c3-r5.raw"
POINTS=$(point_ids "$R")
start_slow_nbd c3 $((1 * M)) "$(img c3)" -B r4
"$PULLBACK_BIN" backup --repo "$R" --vm c3 --disk "vda=$(nbd_uri c3)" --since r4 --bitmap vda=r4 \
  --checkpoint r5 >"$T/kill3.out" 2>"$T/kill3.err" &
KPID=$!
track_pid "$KPID"
sleep 1.5
pid_alive "$KPID" || fail "the backup to kill ended within 1.5 s: $(cat "$T/kill3.err")"
kill -KILL "$KPID"
RC=0
wait "$KPID" || RC=$?
[ "$RC" = 137 ] || fail "killed backup: exit $RC"
stop_server c3
[ "$(point_ids "$R")" = "$POINTS" ] || fail "a killed backup recorded a point"
start_qemu_nbd c3 -r -f qcow2 -B r4 "$(img c3)"
pullback backup --repo "$R" --vm c3 --disk "vda=$(nbd_uri c3)" --since r4 --bitmap vda=r4 --checkpoint r5 --json >"$T/c3-5.json"
stop_server c3
[ "$(json_get "$T/c3-5.json" .mode)" = incremental ] && [ "$(json_get "$T/c3-5.json" .parent)" = "${LAST[c3]}" ] ||
  fail "the backup after the killed one: mode/parent"
record c3 "$T/c3-5.json" "$T/c3-r5.raw"

step "afterwards: gc, stats, verify, every point restores"
final_checks
echo PASS
