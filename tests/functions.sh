# pullback - tests/functions.sh: sourced by every tests/test-*.sh (and tests/demo.sh).
#
# What it gives a test:
#  - strict mode (set -eEuo pipefail) and a report of the failing line;
#  - $T, a per-test scratch directory $abs_top_builddir/tests/NAME.tmp, removed
#    when the test passes and kept (with its logs) when it fails;
#  - cleanup_fn CMD: run CMD at exit (last registered first), whatever the
#    outcome; servers started through the helpers below are registered
#    there and stopped BY PID (never by name);
#  - requires CMD... / requires_root: exit 77 (SKIP) if something is missing -
#    except under CI=true, where a missing requirement is a failure;
#  - pullback: runs $abs_top_builddir/pullback, under valgrind (leaks fail the
#    test, exit 99) when PULLBACK_VALGRIND=1;
#  - expect_fail CODE CMD... / expect_err PHRASE / expect_json_error CODE;
#  - json_get FILE PATH, json_py FILE EXPR;
#  - servers on Unix sockets: start_qemu_nbd, start_nbdkit, start_qemu (+ qmp,
#    guest_io), start_libvirt;
#  - image helpers: check_patterns, same_image, image_size, save_raw,
#    allocated_bytes, data_chunks, qcow2_data_bytes;
#  - check_restore REPO POINT VM DISK EXPECTED_RAW: restores a point to raw
#    and qcow2 and proves both equal the expected image.
# Everything a test starts listens on a Unix socket inside $T.

set -eEuo pipefail
export LC_ALL=C

: "${abs_top_srcdir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${abs_top_builddir:=$abs_top_srcdir}"
export abs_top_srcdir abs_top_builddir
export PATH=$abs_top_builddir:$PATH:/usr/sbin:/sbin

# Debian's python3 directly: a python3 shim (pyenv) earlier in PATH costs
# a tenth of a second per call, and the tests make hundreds.
if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
TESTS_SRCDIR=$abs_top_srcdir/tests
QMP_PY=$TESTS_SRCDIR/qmp.py
PULLBACK_BIN=$abs_top_builddir/pullback
K=1024 M=$((1024 * 1024)) G=$((1024 * 1024 * 1024))
# backup --retries waits 1, 2, 4 s by default before giving up on a server
# a test killed on purpose; a tenth of that keeps such tests quick.
export PULLBACK_RETRY_DELAY_MS=${PULLBACK_RETRY_DELAY_MS:-100}

test_name=$(basename "$0" .sh)
T=$abs_top_builddir/tests/$test_name.tmp
rm -rf "$T"
mkdir -p "$T"

# ---------------------------------------------------------------- reporting
step() { printf '\n=== [%3ss] %s\n' "$SECONDS" "$*"; }
note() { printf '    %s\n' "$*"; }
fail() {
  printf 'FAIL: %s: %s\n' "$test_name" "$*" >&2
  exit 1
}
_on_err() {
  printf '%s: line %s: command failed (exit %s): %s\n' \
    "$test_name" "${BASH_LINENO[0]}" "$1" "$BASH_COMMAND" >&2
}
trap '_on_err $?' ERR

# ---------------------------------------------------------------- clean-up
_cleanup_cmds=()
cleanup_fn() { _cleanup_cmds+=("$*"); }

_on_exit() {
  local rc=$? i
  trap - ERR
  set +e
  for ((i = ${#_cleanup_cmds[@]} - 1; i >= 0; i--)); do
    eval "${_cleanup_cmds[i]}"
  done
  if { [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ]; } && [ -z "${KEEP_TMP:-}" ]; then
    rm -rf "$T"
  elif [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    echo "$test_name: exit $rc; files kept in $T" >&2
  fi
  exit "$rc"
}
trap _on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A process is alive if it exists and is not a zombie.
pid_alive() {
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# stop_pid PID [SECONDS]: SIGTERM, wait, then SIGKILL.  Reaps our children.
stop_pid() {
  local pid=$1 limit=${2:-10} i
  [ -n "$pid" ] || return 0
  if pid_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < limit * 10; i++)); do
      pid_alive "$pid" || break
      sleep 0.1
    done
    if pid_alive "$pid"; then
      echo "$test_name: pid $pid ignored SIGTERM, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

# track_pid PID: stop PID at exit.
track_pid() { cleanup_fn "stop_pid $1"; }

# wait_for SECONDS WHAT CMD...: poll CMD every 0.1 s until it succeeds.
wait_for() {
  local limit=$1 what=$2 i
  shift 2
  for ((i = 0; i < limit * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  fail "timed out after ${limit}s waiting for $what"
}

# ---------------------------------------------------------------- requirements
_missing() {
  if [ "${CI:-}" = true ]; then
    fail "missing requirement under CI: $* (setup.sh must install it)"
  fi
  echo "SKIP: $test_name: $*" >&2
  exit 77
}

requires() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || _missing "command '$c' not found"
  done
}

requires_root() {
  [ "$(id -u)" = 0 ] || _missing "must run as root"
}

# ---------------------------------------------------------------- pullback
[ -x "$PULLBACK_BIN" ] || fail "$PULLBACK_BIN not built (run make first)"

pullback() {
  if [ "${PULLBACK_VALGRIND:-0}" = 1 ]; then
    valgrind --leak-check=full --error-exitcode=99 --quiet \
      --child-silent-after-fork=yes "$PULLBACK_BIN" "$@"
  else
    "$PULLBACK_BIN" "$@"
  fi
}

# expect_fail CODE CMD...: CMD must exit with exactly CODE.  Its stdout and
# stderr are kept in $LAST_OUT and $LAST_ERR.  A pullback error must be
# reported as "pullback: MESSAGE" on stderr.
LAST_OUT=$T/last.out
LAST_ERR=$T/last.err
expect_fail() {
  local want=$1 rc=0
  shift
  "$@" >"$LAST_OUT" 2>"$LAST_ERR" || rc=$?
  if [ "$rc" != "$want" ]; then
    echo "--- stdout:" >&2; cat "$LAST_OUT" >&2
    echo "--- stderr:" >&2; cat "$LAST_ERR" >&2
    fail "expected exit $want, got $rc: $*"
  fi
  if [ "$1" = pullback ] && [ "$want" != 0 ]; then
    grep -q '^pullback: ' "$LAST_ERR" ||
      fail "no 'pullback: MESSAGE' on stderr of: $* (stderr: $(cat "$LAST_ERR"))"
  fi
  note "exit $rc as expected: $(head -n 3 "$LAST_ERR" | tr '\n' ' ')"
}

# expect_err PHRASE...: the last expect_fail's stderr contains every PHRASE
# (fixed strings, case-insensitive).
expect_err() {
  local p
  for p in "$@"; do
    grep -qiF -- "$p" "$LAST_ERR" ||
      fail "stderr lacks '$p'; stderr was: $(cat "$LAST_ERR")"
  done
}

# expect_json_error CODE: the last expect_fail (run with --json) printed
# {"error":{"code":CODE,"class":...,"message":...}} on stdout.
expect_json_error() {
  local code
  code=$(json_get "$LAST_OUT" .error.code) || fail "no JSON error object on stdout: $(cat "$LAST_OUT")"
  [ "$code" = "$1" ] || fail "JSON error code $code, expected $1"
  [ -n "$(json_get "$LAST_OUT" .error.class)" ] || fail "JSON error without class"
  [ -n "$(json_get "$LAST_OUT" .error.message)" ] || fail "JSON error without message"
}

# ---------------------------------------------------------------- JSON
# json_get FILE PATH: PATH is jq-like: .a.b[0].c, [name=vda] selects the
# element of a list whose "name" is vda, a trailing |length counts.
# Strings print raw, null as "null", booleans as true/false, objects and
# lists as compact JSON.  A missing member is an error.
json_get() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import json, re, sys
path, expr = sys.argv[1], sys.argv[2]
with open(path) as f:
    doc = json.load(f)
length = expr.endswith("|length")
if length:
    expr = expr[:-len("|length")]
v = doc
for key, idx, fk, fv in re.findall(r"\.([A-Za-z_][\w-]*)|\[(-?\d+)\]|\[(\w+)=([^\]]*)\]", expr):
    try:
        if key:
            v = v[key]
        elif idx:
            v = v[int(idx)]
        else:
            v = next(e for e in v if str(e.get(fk)) == fv)
    except (KeyError, IndexError, TypeError, StopIteration):
        sys.exit("json_get: %s: no %s in %s" % (path, expr, json.dumps(doc)[:2000]))
if length:
    v = len(v)
if v is None:
    print("null")
elif isinstance(v, bool):
    print("true" if v else "false")
elif isinstance(v, (dict, list)):
    print(json.dumps(v, separators=(",", ":")))
else:
    print(v)
EOF
}

# json_py FILE EXPR: evaluate a Python expression with d = the document.
json_py() {
  "$PYTHON" -c 'import json, sys
d = json.load(open(sys.argv[1]))
r = eval(sys.argv[2])
print(json.dumps(r) if isinstance(r, (dict, list, bool)) or r is None else r)' "$1" "$2"
}

# ---------------------------------------------------------------- NBD servers
nbd_sock() { echo "$T/$1.sock"; }
nbd_uri() { echo "nbd+unix:///${2:-}?socket=$T/$1.sock"; }

# start_qemu_nbd NAME [qemu-nbd options...] IMAGE: serve IMAGE on $T/NAME.sock
# (URI: $(nbd_uri NAME)), persistent, several connections allowed.
start_qemu_nbd() {
  local name=$1 pidf=$T/$1.nbd.pid sock=$T/$1.sock pid
  shift
  rm -f "$pidf" "$sock"
  qemu-nbd --fork --pid-file="$pidf" --socket="$sock" --persistent --shared=16 "$@" \
    2>>"$T/$name.nbd.log" || fail "qemu-nbd $* did not start: $(cat "$T/$name.nbd.log")"
  wait_for 10 "qemu-nbd pid file $pidf" test -s "$pidf"
  pid=$(cat "$pidf")
  track_pid "$pid"
  wait_for 10 "qemu-nbd socket $sock" test -S "$sock"
}

# stop_server NAME: stop the qemu-nbd or nbdkit serving $T/NAME.sock and wait
# until it has gone (so that image locks are released).
stop_server() {
  local pidf
  for pidf in "$T/$1.nbd.pid" "$T/$1.nbdkit.pid"; do
    if [ -s "$pidf" ]; then
      stop_pid "$(cat "$pidf")"
      rm -f "$pidf"
    fi
  done
  rm -f "$T/$1.sock"
}

# server_pid NAME
server_pid() { cat "$T/$1.nbd.pid" 2>/dev/null || cat "$T/$1.nbdkit.pid"; }

# start_nbdkit NAME [nbdkit options and plugin...]: read-only nbdkit on $T/NAME.sock.
start_nbdkit() {
  local name=$1 pidf=$T/$1.nbdkit.pid sock=$T/$1.sock
  shift
  rm -f "$pidf" "$sock"
  nbdkit --readonly --unix "$sock" --pidfile "$pidf" "$@" 2>>"$T/$name.nbdkit.log" ||
    fail "nbdkit $* did not start: $(cat "$T/$name.nbdkit.log")"
  wait_for 10 "nbdkit pid file $pidf" test -s "$pidf"
  track_pid "$(cat "$pidf")"
  wait_for 10 "nbdkit socket $sock" test -S "$sock"
}

# ---------------------------------------------------------------- QEMU + QMP
QMP_SOCK=
QEMU_LOG=
QEMU_PID=
# start_qemu NAME: a paused QEMU without guest (-S), QMP on $T/NAME.qmp.
start_qemu() {
  QMP_SOCK=$T/$1.qmp
  QEMU_LOG=$T/$1.log
  rm -f "$QMP_SOCK"
  qemu-system-x86_64 -machine pc,accel=kvm:tcg -S -nodefaults -display none -m 64 \
    -qmp "unix:$QMP_SOCK,server=on,wait=off" >"$QEMU_LOG" 2>&1 </dev/null &
  QEMU_PID=$!
  track_pid "$QEMU_PID"
  wait_for 20 "QEMU QMP socket" test -S "$QMP_SOCK"
  qmp query-status >/dev/null
}

# qmp COMMAND [JSON]: run a QMP command, print the return value.
qmp() { "$PYTHON" "$QMP_PY" "$QMP_SOCK" "$@"; }
hmp() { "$PYTHON" "$QMP_PY" "$QMP_SOCK" --hmp "$1"; }

# quit_qemu: clean shutdown (persistent bitmaps are written to the qcow2).
quit_qemu() {
  qmp quit >/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do pid_alive "$QEMU_PID" || break; sleep 0.1; done
  pid_alive "$QEMU_PID" && fail "QEMU did not quit"
  wait "$QEMU_PID" 2>/dev/null || true
}

# guest_io DEVICE-ID 'qemu-io command': I/O through the guest device's
# BlockBackend (like guest I/O, so it goes through copy-before-write).  The
# qemu-io output lands in QEMU's log: check it reported success.
guest_io() {
  local dev=$1 cmd=$2 before out
  before=$(wc -l <"$QEMU_LOG")
  hmp "qemu-io -d /machine/peripheral/$dev/virtio-backend \"$cmd\"" >/dev/null
  out=$(tail -n +"$((before + 1))" "$QEMU_LOG")
  case $cmd in
  write*) grep -q '^wrote ' <<<"$out" || fail "guest write '$cmd' failed: $out" ;;
  read*) grep -q '^read ' <<<"$out" && ! grep -q 'verification failed' <<<"$out" ||
    fail "guest read '$cmd' failed: $out" ;;
  esac
  if grep -qi 'error\|failed' <<<"$out"; then fail "guest '$cmd': $out"; fi
}

# ---------------------------------------------------------------- images
# qio IMAGE FORMAT 'cmd' ...: qemu-io commands on an image (quiet).
qio() {
  local img=$1 fmt=$2 c a=()
  shift 2
  for c in "$@"; do a+=(-c "$c"); done
  qemu-io -f "$fmt" "${a[@]}" "$img" >/dev/null
}

# check_patterns IMAGE FORMAT "PATTERN OFFSET LENGTH"...: qemu-io read -P.
check_patterns() {
  local img=$1 fmt=$2 c out a=()
  shift 2
  for c in "$@"; do a+=(-c "read -P $c"); done
  out=$(qemu-io -r -f "$fmt" "${a[@]}" "$img" 2>&1) || fail "qemu-io on $img: $out"
  if grep -q 'verification failed' <<<"$out"; then
    echo "$out" >&2
    fail "pattern mismatch in $img"
  fi
  note "$(basename "$img"): $# pattern checks OK"
}

image_size() {
  qemu-img info -U --output=json -f "$2" "$1" |
    "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'
}

# same_image A FMT_A B FMT_B: identical content AND identical virtual size.
same_image() {
  local sa sb
  sa=$(image_size "$1" "$2")
  sb=$(image_size "$3" "$4")
  [ "$sa" = "$sb" ] || fail "$1 is $sa bytes, $3 is $sb bytes"
  qemu-img compare -U -q -f "$2" -F "$4" "$1" "$3" || fail "$1 and $3 differ: $(qemu-img compare -U -f "$2" -F "$4" "$1" "$3" 2>&1 | head -2)"
}

# save_raw IMAGE FORMAT OUT: a sparse raw copy (the expected content).
save_raw() { qemu-img convert -U -f "$2" -O raw "$1" "$3"; }

# _data_extents FILE: "START END" of every data extent of sparse FILE
# (SEEK_DATA/SEEK_HOLE; st_blocks would also count file-system metadata).
_data_extents() {
  "$PYTHON" - "$1" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size, off = os.fstat(fd).st_size, 0
while off < size:
    try:
        start = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    off = os.lseek(fd, start, os.SEEK_HOLE)
    print(start, off)
EOF
}

# allocated_bytes FILE: bytes in the data extents of a sparse FILE.
allocated_bytes() {
  _data_extents "$1" | awk '{t += $2 - $1} END {printf "%.0f\n", t}'
}

# data_chunks FILE CHUNK_SIZE: how many CHUNK_SIZE pieces of sparse FILE have
# any allocated block.
data_chunks() {
  _data_extents "$1" | awk -v cs="$2" '{
    for (c = int($1 / cs); c <= int(($2 - 1) / cs); c++) seen[c] = 1
  } END {n = 0; for (c in seen) n++; print n}'
}

# qcow2_data_bytes IMAGE: bytes qemu-img map reports as data.
qcow2_data_bytes() {
  qemu-img map -U --output=json -f qcow2 "$1" |
    "$PYTHON" -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))'
}

# chunks_touched CHUNK_SIZE "... OFFSET LENGTH"...: how many distinct chunks
# the ranges touch (the last two numbers of each argument, so qemu-io
# commands such as "write -P 0x11 0 65536" can be passed as they are).
chunks_touched() {
  "$PYTHON" - "$@" <<'EOF'
import sys
cs, s = int(sys.argv[1]), set()
for r in sys.argv[2:]:
    off, length = (int(x) for x in r.split()[-2:])
    s.update(range(off // cs, (off + length - 1) // cs + 1))
print(len(s))
EOF
}

# randfile PATH SIZE: SIZE bytes of fresh random data (for qemu-io write -s).
randfile() { head -c "$2" /dev/urandom >"$1"; }

# mixed_image PATH: 24 MiB (MIXED_SIZE) of 12 MiB random data, 4 MiB of
# zeros and two copies of the first 4 MiB (chunks that dedup).
MIXED_SIZE=$((24 * M))
mixed_image() {
  randfile "$1.r" $((12 * M))
  { cat "$1.r"; head -c $((4 * M)) /dev/zero; head -c $((4 * M)) "$1.r"; head -c $((4 * M)) "$1.r"; } >"$1"
  rm -f "$1.r"
  [ "$(stat -c %s "$1")" = "$MIXED_SIZE" ] || fail "$1 is not $MIXED_SIZE bytes"
}

# ---------------------------------------------------------------- repository
# check_counts BACKUP_JSON: the chunk counts of every disk add up
# (docs/CLI.md): each chunk is read, zero (not read or stored) or kept, and
# only chunks that were read can be new.
check_counts() {
  "$PYTHON" - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
bad = []
for k in d["disks"]:
    r, z, kept, t, new = (k[x] for x in ("chunks_read", "chunks_zero", "chunks_kept", "chunks_total", "chunks_new"))
    if r + z + kept != t:
        bad.append("disk %s: chunks_read %d + chunks_zero %d + chunks_kept %d = %d != chunks_total %d"
                   % (k["name"], r, z, kept, r + z + kept, t))
    if new > r:
        bad.append("disk %s: chunks_new %d > chunks_read %d" % (k["name"], new, r))
sys.exit("; ".join(bad) if bad else 0)
EOF
}

# point_ids REPO [VM]: the ids `pullback list` reports, one line.
point_ids() {
  local vm=()
  [ -n "${2:-}" ] && vm=(--vm "$2")
  pullback list --repo "$1" "${vm[@]}" --json >"$T/list.json"
  json_py "$T/list.json" '" ".join(str(p["id"]) for p in d["points"])'
}

# check_restore REPO POINT VM DISK EXPECTED_RAW: restore DISK of POINT to a
# raw and to a qcow2 image and prove both equal EXPECTED_RAW (qemu-img
# compare, size, pullback digest == show's digest == digest of EXPECTED_RAW),
# the raw one sparse and the qcow2 one thin (only data chunks allocated).
check_restore() {
  local repo=$1 point=$2 vm=$3 disk=$4 want=$5
  local tag=$vm-$disk-$point show=$T/show-$vm-$point.json
  local size cs dshow dwant dchunks fmt target got alloc
  local id
  pullback show --repo "$repo" --point "$point" --vm "$vm" --json >"$show"
  id=$(json_get "$show" .id)
  dshow=$(json_get "$show" ".disks[name=$disk].digest")
  cs=$(json_get "$show" ".disks[name=$disk].chunk_size")
  size=$(json_get "$show" ".disks[name=$disk].size")
  [ "$size" = "$(stat -c %s "$want")" ] || fail "point $point $disk size $size != $(stat -c %s "$want") of $want"
  pullback digest "$want" --repo "$repo" --json >"$T/digest-$tag.json"
  dwant=$(json_get "$T/digest-$tag.json" .digest)
  [ "$dshow" = "$dwant" ] || fail "point $point $disk: show digest $dshow != digest of $want $dwant"
  dchunks=$(data_chunks "$want" "$cs")
  for fmt in raw qcow2; do
    target=$T/restore-$tag.$fmt
    rm -f "$target"
    pullback restore --repo "$repo" --point "$point" --vm "$vm" --disk "$disk" \
      --to "$target" --format "$fmt" --json >"$T/restore-$tag-$fmt.json"
    [ "$(json_get "$T/restore-$tag-$fmt.json" .format)" = "$fmt" ] || fail "restore JSON format"
    [ "$(json_get "$T/restore-$tag-$fmt.json" .size)" = "$size" ] || fail "restore JSON size"
    [ "$(json_get "$T/restore-$tag-$fmt.json" .digest)" = "$dshow" ] || fail "restore JSON digest"
    [ "$(json_get "$T/restore-$tag-$fmt.json" .point)" = "$id" ] || fail "restore JSON point"
    same_image "$target" "$fmt" "$want" raw
    got=$(pullback digest "$target" --repo "$repo")
    [ "${got%% *}" = "$dshow" ] || fail "digest of restored $target: $got, expected $dshow"
    if [ "$fmt" = raw ]; then
      alloc=$(allocated_bytes "$target")
    else
      alloc=$(qcow2_data_bytes "$target")
    fi
    [ "$alloc" -le $((dchunks * cs)) ] ||
      fail "restored $fmt image has $alloc bytes allocated; only $dchunks chunks of $cs hold data"
    note "point $point ($id) $disk -> $fmt: identical, digest ok, $alloc of $size bytes allocated"
  done
}

# ---------------------------------------------------------------- libvirt
# start_libvirt: use the libvirtd that answers on qemu:///system, or start
# virtlogd + libvirtd here (QEMU running as root: qemu.conf gets user/group
# root only while libvirtd starts up) and stop them BY PID at exit.
_QEMU_CONF=/etc/libvirt/qemu.conf
_restore_qemu_conf() {
  if [ -f "$T/qemu.conf.orig" ]; then
    cat "$T/qemu.conf.orig" >"$_QEMU_CONF"
    rm -f "$T/qemu.conf.orig"
  fi
}
start_libvirt() {
  export LIBVIRT_DEFAULT_URI=qemu:///system
  if timeout 10 virsh version >/dev/null 2>&1; then
    note "a libvirtd already answers on $LIBVIRT_DEFAULT_URI: using it"
    return 0
  fi
  cp "$_QEMU_CONF" "$T/qemu.conf.orig"
  cleanup_fn _restore_qemu_conf
  printf '\n# pullback test (temporary)\nuser = "root"\ngroup = "root"\n' >>"$_QEMU_CONF"
  /usr/sbin/virtlogd >"$T/virtlogd.log" 2>&1 </dev/null &
  track_pid $!
  /usr/sbin/libvirtd >"$T/libvirtd.log" 2>&1 </dev/null &
  track_pid $!
  wait_for 30 "libvirtd to answer (see $T/libvirtd.log)" virsh version
  _restore_qemu_conf # read at start-up only: put the original back at once
  note "started virtlogd and libvirtd (pid $!)"
}

# drop_domain DOM: destroy and undefine DOM (with its checkpoint metadata).
drop_domain() {
  if timeout 10 virsh dominfo "$1" >/dev/null 2>&1; then
    virsh destroy "$1" >/dev/null 2>&1 || true
    virsh undefine "$1" --checkpoints-metadata >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------- space (forget, gc)
# store_objects REPO: how many objects (data chunks and map nodes) the
# store's chunks/ directory holds (temporary dot files not counted).
store_objects() {
  [ -d "$1/store/chunks" ] || { echo 0; return 0; }
  find "$1/store/chunks" -type f ! -name '.*' | wc -l
}

# store_bytes REPO: the total size of those objects in bytes (file sizes,
# not blocks: what the store really holds).
store_bytes() {
  [ -d "$1/store/chunks" ] || { echo 0; return 0; }
  find "$1/store/chunks" -type f ! -name '.*' -printf '%s\n' |
    awk '{t += $1} END {printf "%.0f\n", t}'
}

# store_listing REPO: every file of the store (chunks, map nodes, point
# records) with its size and modification time, sorted: equal listings
# before and after a command prove it left the store untouched.
store_listing() {
  (cd "$1/store" && find . -type f ! -name '.*' -printf '%p %s %T@\n' | sort)
}

# json_ids FILE KEY: the list d[KEY] (e.g. forget's "kept" or "removed")
# as space-separated numbers in ascending order.
json_ids() { json_py "$1" "' '.join(str(x) for x in sorted(d['$2']))"; }
