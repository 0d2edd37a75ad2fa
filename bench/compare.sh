#!/bin/bash
# pullback - bench/compare.sh: pullback side by side with the ceiling
# (nbdcopy) and with peers (restic, borg, casync) on the same data.
#
# Usage: bench/compare.sh [RUNS=3] [WORKDIR]
#   env DATA_MIB (default 2048, a multiple of 64): data written into the images
#       IMAGE_GIB (default 4): virtual size of image (a)
#       PEERS (default "restic borg casync"): peers to run ("" = none)
#       CHUNK_SIZES (default "64K 256K 1M 4M"; "" = skip): the chunk-size
#         table of bench/core.sh, run at the end on its own CORE_GIB
#         (default 2) GiB image
#       KEEP=1: keep WORKDIR
# Run as root (settle drops the page cache) from a built tree (./pullback
# must exist) on a quiet machine.  Not part of `make check`.  Installs
# nothing: the peers come from Debian (apt-get install restic borgbackup
# casync: restic 0.14, borg 1.2, casync 2), the rest from setup.sh.
#
# The full run (about 40 minutes on the project's 2-core VM, estimated from
# a validation run; about 35 GB free space needed in /var/tmp; the table on
# stdout, progress on stderr):
#
#   DATA_MIB=2048 IMAGE_GIB=4 bench/compare.sh 3 > compare.md 2> compare.log
#
# A quick validation run (a few minutes, the figures mean nothing):
#
#   DATA_MIB=256 IMAGE_GIB=1 CORE_GIB=1 CHUNK_SIZES=256K bench/compare.sh 1
#
# Images (deterministic on a given machine):
#   (a) IMAGE_GIB GiB virtual qcow2, DATA_MIB of data in 64 MiB stripes
#       alternating with unallocated (zero) stripes: system binaries and
#       libraries, text (man pages and documentation, decompressed, headers,
#       sources), and AES-CTR pseudo-random bytes (incompressible, fixed
#       key) in proportion 5:2:1 of stripes; no stripe repeats another as
#       long as the machine has enough of each (a warning says otherwise);
#   (b) 1 TiB virtual qcow2 holding the same stripes scattered evenly.
# Each is served read-only by qemu-nbd on a Unix socket.  The peers back up
# a raw copy of (a) (a sparse file of IMAGE_GIB GiB); restic, borg and
# casync read its holes as zeros, pullback and nbdcopy skip them
# (base:allocation).  Peers' restores: borg extract --sparse, casync
# punches holes by default, restic 0.14 has no sparse restore.
#
# What is measured, per run (each in a fresh directory, so that no timed
# command follows the deletion of a large repository):
#   ceiling: nbdcopy URI null:, nbdcopy URI - | zstd -1 -T0;
#   pullback on a copy of (a): full backup (checkpoint c0), restore of it to
#     raw and qcow2, incremental after 1% and after 10% of the disk was
#     rewritten (random 64 KiB-aligned writes of random data inside the
#     data stripes by qemu-io, recorded by a persistent qcow2 dirty bitmap,
#     exported with qemu-nbd -B), 8 more incrementals after 0.1% (so that
#     the chain's last point is the 10th incremental), restore of the 10th
#     to raw and qcow2, verify of all 11 points; qemu-img convert -O qcow2
#     of the raw copy (the reference for restore to qcow2);
#   pullback full backup of (b);
#   each peer: backup of the raw copy into a new repository, restore.
# Every restore is compared with its source (not timed).  The runs alternate
# between tools (run 1 of every tool, then run 2 ..., the order of the
# tools reversed in every other run), and each timed command starts after
# settle (bench/lib.sh: sync, page cache dropped); the time of every
# command that writes (backups, restores, qemu-img convert) includes a sync
# after it, so that all tools are timed until their data is on disk (pullback
# fsyncs; qemu-img and the peers' restores do not).  The table gives the
# median wall time, MB/s of disk data (DATA_MIB, for every row, including
# incrementals and restores), the median peak RSS (/usr/bin/time %M; for a
# pipeline, its largest process) and the bytes stored (du of the whole
# repository).  Then the ratios the targets of the issue name.
#
# A command that fails is reported on stderr with its error output, the
# rest of that tool's series in that run is skipped, its rows and ratios
# say FAILED and the script exits 1.  Servers are stopped by PID on exit,
# WORKDIR removed (unless KEEP=1).
set -euo pipefail
RUNS=${1:-3}
W=${2:-$(mktemp -d /var/tmp/pullback-compare.XXXXXX)}
DATA_MIB=${DATA_MIB:-2048}
IMAGE_GIB=${IMAGE_GIB:-4}
CORE_GIB=${CORE_GIB:-2}
PEERS=${PEERS-"restic borg casync"}
CHUNK_SIZES=${CHUNK_SIZES-"64K 256K 1M 4M"}
TOP=$(cd "$(dirname "$0")/.." && pwd)
PB=$TOP/pullback
STRIPE=$((64 << 20))
NSTRIPES=$((DATA_MIB / 64))
GIB=$IMAGE_GIB  # for lib.sh
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$W/cache/restic
export BORG_PASSPHRASE= BORG_BASE_DIR=$W/cache/borg
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
source "$TOP/bench/lib.sh"
SERIES_PID=

# kill_tree PID: PID and its descendants
kill_tree() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$c"; done
  kill "$1" 2>/dev/null || true
}
# the qemu-nbd servers still running (their PIDs are in $W/servers)
kill_servers() {
  local p
  [ -f "$W/servers" ] || return 0
  for p in $(cat "$W/servers"); do
    if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = qemu-nbd ]; then kill "$p" 2>/dev/null || true; fi
  done
  : > "$W/servers"
}
cleanup() {
  [ -n "$SERIES_PID" ] && kill_tree "$SERIES_PID"
  kill_servers
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$W"; else echo "kept $W" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# All runs (and bench/core.sh) use one copy of the binary, taken now: a
# rebuild in the tree during the run changes nothing.  (If a build is
# relinking it just now, wait for it.)
mkdir -p "$W/bin"
for ((i = 0; ; i++)); do
  [ -x "$PB" ] && cp "$PB" "$W/bin/pullback" 2>/dev/null && "$W/bin/pullback" --version >/dev/null 2>&1 && break
  [ "$i" -lt 60 ] || { echo "$0: no working $PB (build pullback first)" >&2; exit 2; }
  sleep 2
done
PB=$W/bin/pullback
export PB
PBREV=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo "?")
git -C "$TOP" diff --quiet HEAD -- . ':!bench' 2>/dev/null || PBREV="$PBREV + uncommitted changes"
for t in qemu-img qemu-nbd qemu-io nbdcopy zstd openssl python3 /usr/bin/time $PEERS; do
  command -v "$t" >/dev/null || { echo "$0: needs $t" >&2; exit 2; }
done
[ $((NSTRIPES * 64)) = "$DATA_MIB" ] && [ "$NSTRIPES" -ge 4 ] ||
  { echo "$0: DATA_MIB must be a multiple of 64, at least 256" >&2; exit 2; }
[ $((NSTRIPES * 2 * STRIPE)) -le $((IMAGE_GIB << 30)) ] ||
  { echo "$0: DATA_MIB too large for IMAGE_GIB" >&2; exit 2; }
mkdir -p "$W" "$W/cache"
cd "$W"
: > failed
: > warnings
need=$(( (DATA_MIB * (6 + 3 * RUNS) >> 10) + IMAGE_GIB ))
free=$(df -BG --output=avail "$W" | tail -n 1 | tr -dc 0-9)
[ "$free" -ge "$need" ] || echo "$0: warning: about $need GB needed in $W, $free GB free" >&2

# ---------------------------------------------------------------- images
# The data stream, stripe by stripe: 5 of 8 stripes binaries, 2 text,
# 1 random.  Sources are read in a sorted order so that a machine always
# builds the same image.
make_sources() {
  local nb=0 nt=0 nr=0 i
  for ((i = 0; i < NSTRIPES; i++)); do
    case $((i % 8)) in 1|5) nt=$((nt + 1)) ;; 3) nr=$((nr + 1)) ;; *) nb=$((nb + 1)) ;; esac
  done
  find /usr/bin /usr/lib /usr/libexec -type f -size +16k 2>/dev/null | LC_ALL=C sort |
    xargs cat 2>/dev/null | head -c $((nb * STRIPE)) > bin.src || true
  # zcat -f: compressed man pages and documents as text, other files as they are
  { find /usr/share/doc /usr/share/man /usr/share/perl5 /usr/share/python3 /usr/include \
      -type f 2>/dev/null | LC_ALL=C sort
    find /usr/lib /usr/share /usr/src -type f \( -name '*.py' -o -name '*.pm' -o -name '*.pl' \
      -o -name '*.h' -o -name '*.c' -o -name '*.txt' -o -name '*.html' -o -name '*.xml' \
      -o -name '*.js' -o -name '*.json' -o -name '*.sh' -o -name '*.rst' -o -name '*.md' \) \
      -not -path '/usr/share/doc/*' -not -path '/usr/share/man/*' -not -path '/usr/share/perl5/*' \
      -not -path '/usr/share/python3/*' 2>/dev/null | LC_ALL=C sort
  } | xargs zcat -f 2>/dev/null | head -c $((nt * STRIPE)) > txt.src || true
  openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
      -iv 0 -in /dev/zero 2>/dev/null | head -c $((nr * STRIPE)) > rnd.src || true
  local f n
  for f in bin:$nb txt:$nt rnd:$nr; do
    n=${f#*:}; f=${f%:*}.src
    [ "$(stat -c %s $f)" -ge "$STRIPE" ] || { echo "$0: too little data in $f" >&2; exit 1; }
    [ "$(stat -c %s $f)" -ge $((n * STRIPE)) ] ||
      echo "warning: only $(( $(stat -c %s $f) >> 20 )) MiB for the $((n * 64)) MiB of $f stripes; stripes repeat (dedup helps every tool)" |
      tee -a warnings >&2
  done
}

# stripe_source I: "FILE OFFSET" for data stripe I.  In every 8 stripes:
# bin txt bin rnd bin txt bin bin, so that even 4 stripes hold all three.
stripe_source() {
  local k=$(($1 % 8)) n=$(($1 / 8))
  case $k in
    0|2|4) src_at bin.src $((n * 5 + k / 2)) ;;
    6|7) src_at bin.src $((n * 5 + k - 3)) ;;
    1|5) src_at txt.src $((n * 2 + k / 4)) ;;
    3) src_at rnd.src "$n" ;;
  esac
}
src_at() { # FILE INDEX: wrap around within the file
  local sz; sz=$(stat -c %s "$1")
  echo "$1 $(( ($2 * STRIPE) % (sz - STRIPE + 4096) / 4096 * 4096 ))"
}

# write_stripes IMAGE GAP: data stripe I goes to offset I*GAP.  -S 0: the
# zero blocks inside binaries are written as data (as a guest writes
# them), so that the image holds exactly DATA_MIB of allocated data.
write_stripes() {
  local img=$1 gap=$2 i f off
  serve w "$img" "" rw
  for ((i = 0; i < NSTRIPES; i++)); do
    read -r f off < <(stripe_source "$i")
    qemu-img convert -n -S 0 --image-opts \
      "driver=raw,offset=$off,size=$STRIPE,file.driver=file,file.filename=$W/$f" \
      --target-image-opts \
      "driver=raw,offset=$((i * gap)),size=$STRIPE,file.driver=nbd,file.server.type=unix,file.server.path=$W/w.sock"
  done
  unserve w
}

make_images() {
  make_sources
  qemu-img create -q -f qcow2 a.qcow2 "${IMAGE_GIB}G"
  write_stripes "$W/a.qcow2" $((2 * STRIPE))
  qemu-img create -q -f qcow2 b.qcow2 1T
  write_stripes "$W/b.qcow2" $(( (1 << 40) / NSTRIPES / STRIPE * STRIPE ))
  qemu-img convert -f qcow2 -O raw -S 4k a.qcow2 a.raw
  rm -f bin.src txt.src rnd.src
  local d; d=$(qemu-img map --output=json -f qcow2 a.qcow2 | python3 -c '
import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))')
  [ "$d" = $((DATA_MIB << 20)) ] || { echo "$0: image (a) holds $d bytes, not $DATA_MIB MiB" >&2; exit 1; }
}

# serve NAME IMAGE [BITMAP] [rw]: export on $W/NAME.sock (read-only unless rw)
serve() {
  rm -f "$W/$1.sock" "$W/$1.pid"
  qemu-nbd $([ "${4:-}" = rw ] || echo -r) -f qcow2 --persistent --shared=8 ${3:+-B "$3"} \
    --socket="$W/$1.sock" --fork --pid-file="$W/$1.pid" "$2"
  cat "$W/$1.pid" >> "$W/servers"
}
unserve() {
  local pid; pid=$(cat "$W/$1.pid")
  kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$W/$1.sock" "$W/$1.pid"
}
uri() { echo "nbd+unix:///?socket=$W/$1.sock"; }

# ---------------------------------------------------------------- measuring
# measure KEY CMD...: settle, run CMD under /usr/bin/time, append
# "wall rss_kib" to $W/KEY.m; CMD's stdout in $W/out.KEY.  If CMD fails:
# say so with its error output, note it in $W/failed, return 1 (which ends
# the series: it runs under set -e).
measure() {
  local key=$1 rc=0 cmd; shift
  cmd="$*"; cmd=${cmd#bash -c \"\$@\" && sync sync-after }
  settle
  /usr/bin/time -o "$W/time.$key" -f "%e %M" "$@" > "$W/out.$key" 2> "$W/err.$key" || rc=$?
  if [ "$rc" != 0 ]; then
    { echo "$0: FAILED (exit $rc) in run $run: $key: $cmd"; tail -n 20 "$W/err.$key" | sed 's/^/    /'; } >&2
    echo "$key" >> "$W/failed"
    return 1
  fi
  tail -n 1 "$W/time.$key" >> "$W/$key.m"
}
# measure_sh KEY SCRIPT: the same for a shell pipeline.
measure_sh() { measure "$1" bash -o pipefail -c "$2"; }
# measure_w KEY CMD...: for a command that writes files: the time includes
# a sync after it, so that a tool that leaves its data in the page cache
# (qemu-img convert, the peers' restores) is timed like pullback, which
# fsyncs what it writes.
measure_w() { local key=$1; shift; measure "$key" bash -c '"$@" && sync' sync-after "$@"; }
# note KEY VALUE: a per-run value (bytes stored, bytes read) into $W/KEY.m
note() { echo "$2" >> "$W/$1.m"; }
stored() { du -sb "$1" | awk '{print $1}'; }
check() { # KEY WHAT CMD...: CMD must succeed, else KEY failed (a wrong restore is a failure)
  local key=$1 what=$2; shift 2
  "$@" || { echo "$0: FAILED in run $run: $key: $what" >&2; echo "$key" >> "$W/failed"; return 1; }
}

# rewrite PERCENT SEED IMAGE: random 64 KiB-aligned writes of random data
# (one of 1024 pseudo-random 64 KiB blocks each, so little of it dedups)
# over PERCENT of the virtual disk, all inside the data stripes so that the
# amount of data stays the same (qemu-io, so a persistent bitmap records
# them).  Prints the bytes of the distinct CHUNK-sized chunks written.
rewrite() {
  mkdir -p "$W/blocks"
  [ -f "$W/blocks/1023" ] || python3 - "$W/blocks" <<'EOF2'
import random, sys
random.seed(7)
for i in range(1024):
    open("%s/%d" % (sys.argv[1], i), "wb").write(random.randbytes(65536))
EOF2
  python3 - "$1" "$2" "$((IMAGE_GIB << 30))" "$NSTRIPES" "$STRIPE" "$W/blocks" <<'EOF2' > writes.io
import random, sys
pct, seed, size, nstripes, stripe = float(sys.argv[1]), *map(int, sys.argv[2:6])
random.seed(seed)
per = stripe // 65536
slots = [(2 * s * stripe) // 65536 + k for s in range(nstripes) for k in range(per)]
for off in random.sample(slots, min(len(slots), int(size * pct / 100) // 65536)):
    print("write -s %s/%d %d 65536" % (sys.argv[6], random.randrange(1024), off * 65536))
EOF2
  # On stdin, one command a line: as arguments (-c) a long list would be
  # split by xargs, and a split between -c and its command fails silently.
  local wrote
  wrote=$(qemu-io -f qcow2 "$3" < writes.io | grep -c 'wrote 65536/65536 bytes' || true)
  [ "$wrote" = "$(wc -l < writes.io)" ] ||
    { echo "$0: rewrite $1%: qemu-io made $wrote of $(wc -l < writes.io) writes" >&2; return 1; }
  awk -v cs="$CHUNK" '{c[int($4 / cs)] = 1} END {print length(c) * cs}' writes.io
}

# ---------------------------------------------------------------- runs
# Each series runs in a subshell in the run's directory; a failure ends it.

# pullback_series: every pullback measurement on (a copy of) image (a)
pullback_series() {
  local i
  cp "$W/a.qcow2" w.qcow2
  "$PB" init --repo pb.repo > /dev/null
  qemu-img bitmap --add --enable -f qcow2 w.qcow2 c0
  serve pa w.qcow2
  measure_w pb_full "$PB" backup --repo pb.repo --vm a --disk vda="$(uri pa)" --checkpoint c0 --quiet --json
  unserve pa
  note pb_full_stored "$(stored pb.repo)"
  CHUNK=$("$PB" show --repo pb.repo --point latest --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["disks"][0]["chunk_size"])')
  echo "$CHUNK" > "$W/chunk_size"
  measure_w pb_restore_full_raw "$PB" restore --repo pb.repo --point latest --vm a --disk vda --to t.raw --quiet
  check pb_restore_full_raw "restored image differs" qemu-img compare -q -f qcow2 -F raw "$W/a.qcow2" t.raw
  rm -f t.raw
  measure_w pb_restore_full_qcow2 "$PB" restore --repo pb.repo --point latest --vm a --disk vda \
    --to t.qcow2 --format qcow2 --quiet
  check pb_restore_full_qcow2 "restored image differs" qemu-img compare -q -f qcow2 -F qcow2 "$W/a.qcow2" t.qcow2
  rm -f t.qcow2
  # the same writes in every run (fixed seeds), so bytes read are comparable
  incremental 1 1 c0 c1 pb_inc1
  incremental 10 10 c1 c10 pb_inc10
  # eight more small incrementals, so that the last point is the 10th
  incremental 0.1 102 c10 c102 pb_incsmall
  for i in 3 4 5 6 7 8 9; do
    incremental 0.1 "$((i + 100))" "c$((i + 99))" "c$((i + 100))" pb_incsmall
  done
  measure_w pb_restore_10th_raw "$PB" restore --repo pb.repo --point latest --vm a --disk vda --to t.raw --quiet
  check pb_restore_10th_raw "restored image differs" qemu-img compare -q -f qcow2 -F raw w.qcow2 t.raw
  rm -f t.raw
  measure_w pb_restore_10th_qcow2 "$PB" restore --repo pb.repo --point latest --vm a --disk vda \
    --to t.qcow2 --format qcow2 --quiet
  check pb_restore_10th_qcow2 "restored image differs" qemu-img compare -q -f qcow2 -F qcow2 w.qcow2 t.qcow2
  rm -f t.qcow2
  measure pb_verify "$PB" verify --repo pb.repo --json
  check pb_verify "verify not ok" [ "$(json "$W/out.pb_verify" ok)" = True ]
  check pb_verify "verify did not check 11 points" [ "$(json "$W/out.pb_verify" points_checked)" = 11 ]
  measure_w qemu_convert qemu-img convert -f raw -O qcow2 "$W/a.raw" t.qcow2
  rm -f t.qcow2 w.qcow2
}

# incremental PERCENT SEED SINCE NEW KEY: rewrite, then backup --since
incremental() {
  local dirty before
  dirty=$(rewrite "$1" "$2" w.qcow2)
  qemu-img bitmap --add --enable -f qcow2 w.qcow2 "$4"
  serve pa w.qcow2 "$3"
  before=$(stored pb.repo)
  measure_w "$5" "$PB" backup --repo pb.repo --vm a --disk vda="$(uri pa)" --since "$3" \
    --bitmap vda="$3" --checkpoint "$4" --quiet --json
  unserve pa
  qemu-img bitmap --remove -f qcow2 w.qcow2 "$3"
  check "$5" "not an incremental" [ "$(json "$W/out.$5" mode)" = incremental ]
  note "$5_read" "$(json "$W/out.$5" disks.0.bytes_read)"
  note "$5_new" "$(json "$W/out.$5" disks.0.bytes_new)"
  note "$5_dirty" "$dirty"
  [ "$(json "$W/out.$5" disks.0.bitmap_mismatches)" = 0 ] ||
    echo "$5 (run $run): pullback reports $(json "$W/out.$5" disks.0.bitmap_mismatches) bitmap mismatches" | tee -a "$W/warnings" >&2
  note "$5_stored" $(( $(stored pb.repo) - before ))
}

sparse_series() {
  "$PB" init --repo pbb.repo > /dev/null
  serve pb "$W/b.qcow2"
  measure_w pb_full_1t "$PB" backup --repo pbb.repo --vm b --disk vda="$(uri pb)" --quiet --json
  unserve pb
  note pb_full_1t_stored "$(stored pbb.repo)"
}

ceiling_series() {
  serve pc "$W/a.qcow2"
  measure nbdcopy_null nbdcopy "$(uri pc)" null:
  measure_sh nbdcopy_zstd "nbdcopy '$(uri pc)' - | zstd -1 -T0 -q -c > /dev/null"
  unserve pc
}

peer_series() { # PEER
  local p=$1 raw=$W/a.raw
  mkdir -p "$p.out"
  case $p in
    restic)
      restic init -q --repository-version 2 -r restic.repo
      measure_w restic_backup restic -q -r restic.repo backup --compression auto "$raw"
      note restic_stored "$(stored restic.repo)"
      measure_w restic_restore restic -q -r restic.repo restore latest --target restic.out ;;
    borg)
      borg init -e none borg.repo
      measure_w borg_backup borg create --compression zstd borg.repo::a "$raw"
      note borg_stored "$(stored borg.repo)"
      measure_sh borg_restore "cd borg.out && borg extract --sparse ../borg.repo::a && sync" ;;
    casync)
      mkdir -p casync.repo
      measure_w casync_backup casync make --store=casync.repo/store casync.repo/a.caibx "$raw"
      note casync_stored "$(stored casync.repo)"
      measure_w casync_restore casync extract --store=casync.repo/store casync.repo/a.caibx casync.out/a.raw ;;
  esac
  local out; out=$(find "$p.out" -type f -name a.raw | head -n 1)
  check "${p}_restore" "restored file differs from the raw copy" cmp -s "$raw" "$out"
  rm -rf "$p.out"
}

# run_series NAME [ARG]: one series in the run's directory, in a subshell
# (set -e applies inside it; a failure is noted and the run goes on)
run_series() {
  local rc=0
  echo "  $* ($(date +%T))" >&2
  SERIES="$*"
  ( set -eE; trap '[ "$BASH_COMMAND" = "return 1" ] ||
    echo "$0: line $LINENO: \"$BASH_COMMAND\" failed (run $run, $SERIES)" >&2' ERR
    cd "$W/run$run"; "$@" ) &
  SERIES_PID=$!
  wait "$SERIES_PID" || rc=$?
  SERIES_PID=
  if [ "$rc" != 0 ]; then
    echo "$1${2:+ $2}" >> "$W/failed_series"
    kill_servers
  fi
}

# ---------------------------------------------------------------- report
failed() { grep -qx "$1" "$W/failed" 2>/dev/null; }
# med KEY [COLUMN(1 wall, 2 rss)]: the median over runs; empty if none or failed
med() {
  [ -s "$W/$1.m" ] && ! failed "$1" || return 0
  awk -v c="${2:-1}" '{print $c}' "$W/$1.m" | median
}
maxof() { [ -s "$W/$1.m" ] && awk -v c="${2:-1}" '$c > m {m = $c} END {print m}' "$W/$1.m"; }
mib() { [ -n "$1" ] && awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
rate() { awk -v n="$DATA_MIB" -v t="$1" 'BEGIN {printf "%.0f", n * 1.048576 / t}'; }
row() { # LABEL KEY [STORED_KEY]
  local t r s
  if failed "$2"; then printf '| %s | FAILED | | | |\n' "$1"; return; fi
  t=$(med "$2"); [ -n "$t" ] || { printf '| %s | not run | | | |\n' "$1"; return; }
  r=$(med "$2" 2)
  s=${3:+$(mib "$(med "$3")")}
  printf '| %s | %.2f | %s | %d | %s |\n' "$1" "$t" "$(rate "$t")" $((r / 1024)) "$s"
}
# ratio LABEL NUM DEN OP TARGET [UNIT]: NUM/DEN, then met / NOT met
ratio() {
  local label=$1 a=$2 b=$3 op=$4 target=$5 unit=${6:-x}
  if [ -z "$a" ] || [ -z "$b" ]; then echo "- $label: n/a (a measurement failed or was not run)"; return; fi
  awk -v l="$label" -v a="$a" -v b="$b" -v op="$op" -v t="$target" -v u="$unit" 'BEGIN {
    r = a / b; if (u == "%") r *= 100
    ok = (op == ">=") ? r >= t : r <= t
    printf "- %s: %.2f%s (target %s %s%s: %s)\n", l, r, u, op, t, u, ok ? "met" : "NOT met" }'
}

report() {
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -r); $(date -u '+%F %H:%M UTC')."
  echo "pullback $("$PB" --version | awk '{print $2}') ($PBREV)," \
    "$(restic version 2>/dev/null | awk '{print "restic " $2}'), $(borg --version 2>/dev/null)," \
    "casync $(casync --version 2>/dev/null | head -n 1 | awk '{print $NF}'), $(nbdcopy --version | head -n 1), $(qemu-img --version | head -n 1 | awk '{print "qemu-img " $3}'), $(zstd --version | grep -o 'v[0-9.]*' | head -n 1 | sed 's/^/zstd /')."
  echo "Data: $DATA_MIB MiB in image (a) ($IMAGE_GIB GiB virtual) and in image (b) (1 TiB virtual); $RUNS runs, medians; chunk size $CHUNK."
  [ -s "$W/warnings" ] && sed 's/^/Warning: /' "$W/warnings"
  echo
  echo "| measurement | median s | MB/s of data | peak RSS MiB | stored MiB |"
  echo "|---|---|---|---|---|"
  row 'ceiling: nbdcopy -> null:' nbdcopy_null
  row 'ceiling: nbdcopy - \| zstd -1 -T0' nbdcopy_zstd
  row 'pullback full (a)' pb_full pb_full_stored
  row 'pullback full (b), 1 TiB sparse' pb_full_1t pb_full_1t_stored
  row 'pullback incremental, 1% rewritten' pb_inc1 pb_inc1_stored
  row 'pullback incremental, 10% rewritten' pb_inc10 pb_inc10_stored
  row 'pullback incremental, 0.1% rewritten (8 in the chain)' pb_incsmall pb_incsmall_stored
  row 'pullback restore full -> raw' pb_restore_full_raw
  row 'pullback restore full -> qcow2' pb_restore_full_qcow2
  row 'pullback restore 10th incremental -> raw' pb_restore_10th_raw
  row 'pullback restore 10th incremental -> qcow2' pb_restore_10th_qcow2
  row 'pullback verify (11 points)' pb_verify
  row 'qemu-img convert -O qcow2 (raw copy)' qemu_convert
  local p k
  for p in $PEERS; do
    row "$p backup (raw copy)" "${p}_backup" "${p}_stored"
    row "$p restore" "${p}_restore"
  done
  echo
  for k in 1 10; do
    if [ -n "$(med pb_inc$k)" ]; then
      echo "Incremental after $k%: read $(mib "$(med pb_inc${k}_read)") MiB over NBD (bytes_read);" \
        "dirty data rounded up to whole chunks $(mib "$(med pb_inc${k}_dirty)") MiB;" \
        "new chunks stored $(mib "$(med pb_inc${k}_new)") MiB (bytes_new, compressed), repository grew $(mib "$(med pb_inc${k}_stored)") MiB."
    fi
  done
  echo
  echo "Ratios (targets of the issue; times are medians):"
  echo
  local full; full=$(med pb_full)
  for p in $PEERS; do
    ratio "full backup (a): pullback vs $p (time of $p / time of pullback)" "$(med "${p}_backup")" "$full" '>=' 2
  done
  ratio 'full backup (a): pullback vs ceiling nbdcopy | zstd -1 -T0 (throughput ratio)' "$(med nbdcopy_zstd)" "$full" '>=' 0.8
  ratio 'full backup (a): pullback vs nbdcopy -> null: (information)' "$(med nbdcopy_null)" "$full" '>=' 0
  ratio 'incremental after 1%: wall time as % of the full' "$(med pb_inc1)" "$full" '<=' 5 %
  ratio 'full backup (b) 1 TiB sparse / full backup (a)' "$(med pb_full_1t)" "$full" '<=' 1.3
  for p in $PEERS; do
    ratio "restore to raw: pullback vs $p restore" "$(med "${p}_restore")" "$(med pb_restore_full_raw)" '>=' 2
  done
  ratio 'restore to qcow2: pullback vs qemu-img convert -O qcow2' "$(med qemu_convert)" "$(med pb_restore_full_qcow2)" '>=' 0.8
  ratio 'restore of the 10th incremental / of the full, raw' "$(med pb_restore_10th_raw)" "$(med pb_restore_full_raw)" '<=' 1.1
  ratio 'restore of the 10th incremental / of the full, qcow2' "$(med pb_restore_10th_qcow2)" "$(med pb_restore_full_qcow2)" '<=' 1.1
  echo
  echo "Peak RSS of every pullback command (largest over all runs; target < 256 MiB):"
  echo
  local worst=0 m
  for k in pb_full pb_full_1t pb_inc1 pb_inc10 pb_incsmall pb_restore_full_raw pb_restore_full_qcow2 \
      pb_restore_10th_raw pb_restore_10th_qcow2 pb_verify; do
    m=$(maxof "$k" 2) || m=
    if [ -z "$m" ] || failed "$k"; then echo "- $k: n/a"; continue; fi
    echo "- $k: $((m / 1024)) MiB"
    [ "$m" -gt "$worst" ] && worst=$m
  done
  if [ "$worst" = 0 ]; then echo "- largest: n/a"
  else echo "- largest: $((worst / 1024)) MiB ($([ "$worst" -lt $((256 << 10)) ] && echo met || echo NOT met))"; fi
}

echo "building images in $W ($(date +%T)) ..." >&2
make_images
CHUNK=$((256 << 10))  # replaced by what the first full backup reports
for ((run = 1; run <= RUNS; run++)); do
  echo "run $run of $RUNS ..." >&2
  mkdir -p "run$run"
  series=(ceiling_series pullback_series sparse_series)
  for p in $PEERS; do series+=("peer_series $p"); done
  if ((run % 2 == 0)); then
    for ((i = ${#series[@]} - 1; i >= 0; i--)); do run_series ${series[i]}; done
  else
    for s in "${series[@]}"; do run_series $s; done
  fi
  [ -s "$W/chunk_size" ] && CHUNK=$(cat "$W/chunk_size")
done
report
if [ -n "$CHUNK_SIZES" ]; then
  echo
  echo "Chunk sizes (bench/core.sh on its own $CORE_GIB GiB image, one run):"
  echo
  echo "  bench/core.sh ($(date +%T)) ..." >&2
  "$TOP/bench/core.sh" "$CORE_GIB" "$CHUNK_SIZES" "$W/core" ||
    { echo "bench/core.sh FAILED"; echo core.sh >> "$W/failed_series"; }
fi
if [ -s "$W/failed" ] || [ -s "$W/failed_series" ]; then
  echo
  echo "FAILED: $(sort -u "$W/failed" "$W/failed_series" 2>/dev/null | tr '\n' ' ')(see stderr)"
  exit 1
fi
echo "done ($(date +%T))" >&2
