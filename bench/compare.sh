#!/bin/bash
# pullback - bench/compare.sh: pullback side by side with the ceiling
# (nbdcopy) and with peers (restic, borg, casync) on the same data.
#
# Usage: bench/compare.sh [RUNS=3] [WORKDIR]
#   env DATA_MIB (default 2048): data written into the images
#       IMAGE_GIB (default 4): virtual size of image (a)
#       PEERS (default "restic borg casync"): peers to run ("" = none)
#       CHUNK_SIZES (default "64K 256K 1M 4M"; "" = skip): the chunk-size
#         table of bench/core.sh, run at the end
#       KEEP=1: keep WORKDIR
# Run from a built tree (./pullback must exist) on a quiet machine.  Not
# part of `make check`.  Installs nothing: the peers come from Debian
# (apt-get install restic borgbackup casync), the rest from setup.sh.
#
# Images (deterministic on a given machine):
#   (a) IMAGE_GIB GiB virtual qcow2, DATA_MIB of data in 64 MiB stripes
#       alternating with unallocated (zero) stripes: system binaries and
#       libraries, text from /usr/share, and AES-CTR pseudo-random bytes
#       (incompressible, fixed key) in proportion 5:2:1 of stripes;
#   (b) 1 TiB virtual qcow2 holding the same stripes scattered evenly.
# Each is served read-only by qemu-nbd on a Unix socket.  The peers back up
# a raw copy of (a) (a sparse file of IMAGE_GIB GiB).
#
# For every measurement the runs alternate between tools (run 1 of every
# tool, then run 2 ...), and the table gives the median wall time, MB/s of
# disk data (DATA_MIB), the median peak RSS and the bytes stored.
set -euo pipefail
RUNS=${1:-3}
W=${2:-$(mktemp -d /var/tmp/pullback-compare.XXXXXX)}
DATA_MIB=${DATA_MIB:-2048}
IMAGE_GIB=${IMAGE_GIB:-4}
PEERS=${PEERS-"restic borg casync"}
TOP=$(cd "$(dirname "$0")/.." && pwd)
PB=$TOP/pullback
STRIPE=$((64 << 20))
NSTRIPES=$((DATA_MIB / 64))
export RESTIC_PASSWORD=bench BORG_PASSPHRASE= BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
SERVERS=()

cleanup() {
  local p
  for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$W"; fi
}
trap cleanup EXIT
[ -x "$PB" ] || { echo "$0: build pullback first" >&2; exit 2; }
for t in qemu-img qemu-nbd qemu-io nbdcopy zstd openssl python3 /usr/bin/time $PEERS; do
  command -v "$t" >/dev/null || { echo "$0: needs $t" >&2; exit 2; }
done
[ $((NSTRIPES * 2 * STRIPE)) -le $((IMAGE_GIB << 30)) ] ||
  { echo "$0: DATA_MIB too large for IMAGE_GIB" >&2; exit 2; }
mkdir -p "$W"
cd "$W"

# ---------------------------------------------------------------- images
# The data stream, stripe by stripe: 5 of 8 stripes binaries, 2 text,
# 1 random.  Sources are read in a sorted order so that a machine always
# builds the same image.
make_sources() {
  find /usr/bin /usr/lib /usr/libexec -type f -size +16k 2>/dev/null | LC_ALL=C sort |
    xargs cat 2>/dev/null | head -c $((NSTRIPES * STRIPE)) > bin.src || true
  find /usr/share/doc /usr/share/man /usr/share/perl5 /usr/share/python3 /usr/include \
      -type f 2>/dev/null | LC_ALL=C sort | xargs cat 2>/dev/null |
    head -c $((NSTRIPES * STRIPE)) > txt.src || true
  openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
      -iv 0 -in /dev/zero 2>/dev/null | head -c $((NSTRIPES * STRIPE / 4 + STRIPE)) > rnd.src || true
  local f
  for f in bin.src txt.src rnd.src; do
    [ "$(stat -c %s $f)" -ge $((2 * STRIPE)) ] || { echo "$0: too little data in $f" >&2; exit 1; }
  done
}

# stripe_source I: "FILE OFFSET" for data stripe I.
stripe_source() {
  local i=$1 k=$(($1 % 8)) n=$(($1 / 8))
  case $k in
    0|1|2|3|4) src_at bin.src $((n * 5 + k)) ;;
    5|6) src_at txt.src $((n * 2 + k - 5)) ;;
    7) src_at rnd.src "$n" ;;
  esac
}
src_at() { # FILE INDEX: wrap around within the file
  local sz; sz=$(stat -c %s "$1")
  echo "$1 $(( ($2 * STRIPE) % (sz - STRIPE) / 4096 * 4096 ))"
}

# write_stripes IMAGE FORMAT GAP: data stripe I goes to offset I*GAP.
write_stripes() {
  local img=$1 fmt=$2 gap=$3 i f off
  qemu-nbd -f "$fmt" --persistent --socket="$W/w.sock" --fork --pid-file="$W/w.pid" "$img"
  for ((i = 0; i < NSTRIPES; i++)); do
    read -r f off < <(stripe_source "$i")
    qemu-img convert -n --image-opts \
      "driver=raw,offset=$off,size=$STRIPE,file.driver=file,file.filename=$W/$f" \
      --target-image-opts \
      "driver=raw,offset=$((i * gap)),size=$STRIPE,file.driver=nbd,file.server.type=unix,file.server.path=$W/w.sock"
  done
  kill "$(cat w.pid)"
  while [ -S w.sock ] && kill -0 "$(cat w.pid)" 2>/dev/null; do sleep 0.1; done
}

make_images() {
  make_sources
  qemu-img create -q -f qcow2 a.qcow2 "${IMAGE_GIB}G"
  write_stripes a.qcow2 qcow2 $((2 * STRIPE))
  qemu-img create -q -f qcow2 b.qcow2 1T
  write_stripes b.qcow2 qcow2 $(( (1 << 40) / NSTRIPES / STRIPE * STRIPE ))
  qemu-img convert -f qcow2 -O raw -S 4k a.qcow2 a.raw
  rm -f bin.src txt.src rnd.src
}

# serve NAME IMAGE [BITMAP]: read-only export on $W/NAME.sock
serve() {
  qemu-nbd -r -f qcow2 --persistent --shared=8 ${3:+-B "$3"} --socket="$W/$1.sock" \
    --fork --pid-file="$W/$1.pid" "$2"
  SERVERS+=("$(cat "$1.pid")")
}
unserve() {
  local pid; pid=$(cat "$1.pid")
  kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$1.sock"
}
uri() { echo "nbd+unix:///?socket=$W/$1.sock"; }

# ---------------------------------------------------------------- measuring
# measure KEY CMD...: run CMD under /usr/bin/time, append "wall rss_kib" to
# KEY.m; fail loudly if CMD fails.
measure() {
  local key=$1; shift
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -o "time.$key" -f "%e %M" "$@" > "out.$key" 2> "err.$key" ||
    { echo "$0: $key failed:" >&2; cat "err.$key" >&2; exit 1; }
  cat "time.$key" >> "$key.m"
}
# measure_sh KEY SCRIPT: the same for a shell pipeline (RSS of the shell).
measure_sh() { measure "$1" bash -c "$2"; }

median() { # KEY COLUMN(1 wall, 2 rss)
  awk -v c="$2" '{print $c}' "$1.m" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}
stored() { du -sb "$1" | awk '{print $1}'; }
mbps() { awk -v n="$DATA_MIB" -v t="$1" 'BEGIN {printf "%.0f", n * 1.048576 / t}'; }

# rewrite PERCENT SEED IMAGE: random 64 KiB-aligned writes of random data
# (one of 1024 pseudo-random 64 KiB blocks each, so little of it dedups)
# over PERCENT of the virtual disk, all inside the data stripes so that the
# amount of data stays the same (qemu-io, so a persistent bitmap records them).
rewrite() {
  mkdir -p blocks
  [ -f blocks/1023 ] || python3 - <<'EOF2'
import random
random.seed(7)
for i in range(1024):
    open("blocks/%d" % i, "wb").write(random.randbytes(65536))
EOF2
  python3 - "$1" "$2" "$((IMAGE_GIB << 30))" "$NSTRIPES" "$STRIPE" <<'EOF2' > writes.io
import random, sys
pct, seed, size, nstripes, stripe = float(sys.argv[1]), *map(int, sys.argv[2:])
random.seed(seed)
per = stripe // 65536
slots = [(2 * s * stripe) // 65536 + k for s in range(nstripes) for k in range(per)]
for off in random.sample(slots, min(len(slots), int(size * pct / 100) // 65536)):
    print("write -s blocks/%d %d 65536" % (random.randrange(1024), off * 65536))
EOF2
  sed 's/^/-c\n/' writes.io | tr '\n' '\0' | xargs -0 qemu-io -f qcow2 "$3" > /dev/null
}

# ---------------------------------------------------------------- runs
# pullback_series R: one run of every pullback measurement on image (a)
pullback_series() {
  local i
  rm -rf pb.repo t.raw t.qcow2; cp a.qcow2 w.qcow2
  "$PB" init --repo pb.repo > /dev/null
  serve pa w.qcow2
  measure pb_full "$PB" backup --repo pb.repo --vm a --disk vda="$(uri pa)" --checkpoint c0 --quiet
  unserve pa
  echo "$(stored pb.repo/store)" >> pb_full_stored.m
  measure pb_restore_full_raw "$PB" restore --repo pb.repo --point latest --vm a --disk vda --to t.raw
  measure pb_restore_full_qcow2 "$PB" restore --repo pb.repo --point latest --vm a --disk vda \
    --to t.qcow2 --format qcow2
  rm -f t.raw t.qcow2
  # the same writes in every run (fixed seeds), so bytes read are comparable
  for i in 1 10; do incremental "$i" "$i" "c$((i == 1 ? 0 : 1))" "c$i" pb_inc$i; done
  # eight more small incrementals, so that the last point is the 10th
  for i in 2 3 4 5 6 7 8 9; do
    incremental 0.1 "$((i + 100))" "c$((i == 2 ? 10 : i + 99))" "c$((i + 100))" pb_incsmall
  done
  measure pb_restore_10th_raw "$PB" restore --repo pb.repo --point latest --vm a --disk vda --to t.raw
  qemu-img compare -q -f qcow2 -F raw w.qcow2 t.raw
  measure pb_restore_10th_qcow2 "$PB" restore --repo pb.repo --point latest --vm a --disk vda \
    --to t.qcow2 --format qcow2
  qemu-img compare -q -f qcow2 -F qcow2 w.qcow2 t.qcow2
  rm -f t.raw t.qcow2
  measure pb_verify "$PB" verify --repo pb.repo
  measure qemu_convert qemu-img convert -f raw -O qcow2 a.raw t.qcow2
  rm -f t.qcow2
}

# incremental PERCENT SEED SINCE NEW KEY
incremental() {
  qemu-img bitmap --add --enable -f qcow2 w.qcow2 "$3" 2>/dev/null || true
  rewrite "$1" "$2" w.qcow2
  serve pa w.qcow2 "$3"
  measure "$5" "$PB" backup --repo pb.repo --vm a --disk vda="$(uri pa)" --since "$3" \
    --bitmap vda="$3" --checkpoint "$4" --quiet --json
  cp "out.$5" "$5.json"
  unserve pa
  qemu-img bitmap --remove -f qcow2 w.qcow2 "$3"
}

sparse_series() {
  rm -rf pbb.repo
  "$PB" init --repo pbb.repo > /dev/null
  serve pb b.qcow2
  measure pb_full_1t "$PB" backup --repo pbb.repo --vm b --disk vda="$(uri pb)" --quiet
  unserve pb
}

ceiling_series() {
  serve pc a.qcow2
  measure nbdcopy_null nbdcopy "$(uri pc)" null:
  measure_sh nbdcopy_zstd "nbdcopy '$(uri pc)' - | zstd -1 -T0 -q -c > /dev/null"
  unserve pc
}

peer_series() {
  local p
  for p in $PEERS; do
    rm -rf "$p.repo" "$p.out"; mkdir -p "$p.out"
    case $p in
      restic)
        restic init -q --repository-version 2 -r restic.repo
        measure restic_backup restic -q -r restic.repo backup --compression auto a.raw
        measure restic_restore restic -q -r restic.repo restore latest --target restic.out ;;
      borg)
        borg init -e none borg.repo
        measure borg_backup borg create --compression zstd,3 borg.repo::a a.raw
        measure_sh borg_restore "cd borg.out && borg extract ../borg.repo::a" ;;
      casync)
        mkdir -p casync.repo
        measure casync_backup casync make --store=casync.repo/store casync.repo/a.caibx a.raw
        measure casync_restore casync extract --store=casync.repo/store casync.repo/a.caibx casync.out/a.raw ;;
    esac
    echo "$(stored "$p.repo")" >> "${p}_stored.m"
    cmp -s a.raw "$(find "$p.out" -type f -name a.raw | head -n 1)" ||
      { echo "$0: $p restored different data" >&2; exit 1; }
    rm -rf "$p.out"
  done
}

# ---------------------------------------------------------------- report
if [ "${CHUNK_SIZES-64K 256K 1M 4M}" != "" ]; then
  echo
  echo "Chunk sizes (bench/core.sh on its own 2 GiB image):"
  echo
  "$TOP/bench/core.sh" 2 "${CHUNK_SIZES-64K 256K 1M 4M}"
fi
row() { # LABEL KEY [STORED_KEY]
  local t; t=$(median "$2" 1)
  printf '| %s | %.2f | %s | %d | %s |\n' "$1" "$t" "$(mbps "$t")" \
    $(( $(median "$2" 2) / 1024 )) "${3:+$(( $(median "$3" 1) >> 20 ))}"
}
json_sum() { # KEY FIELD: median over runs of disks[0].FIELD
  for f in "$1".json; do python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["disks"][0][sys.argv[2]])' "$f" "$2"; done
}

report() {
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -r); $(date -u +%F)."
  echo "Data: $DATA_MIB MiB in image (a) ($IMAGE_GIB GiB virtual) and in image (b) (1 TiB virtual); $RUNS runs, medians."
  echo
  echo "| measurement | wall s | MB/s of data | peak RSS MiB | stored MiB |"
  echo "|---|---|---|---|---|"
  row "ceiling: nbdcopy -> null:" nbdcopy_null
  row "ceiling: nbdcopy - \| zstd -1 -T0" nbdcopy_zstd
  row "pullback full (a)" pb_full pb_full_stored
  row "pullback full (b), 1 TiB sparse" pb_full_1t
  row "pullback incremental, 1% rewritten" pb_inc1
  row "pullback incremental, 10% rewritten" pb_inc10
  row "pullback restore full -> raw" pb_restore_full_raw
  row "pullback restore full -> qcow2" pb_restore_full_qcow2
  row "pullback restore 10th incremental -> raw" pb_restore_10th_raw
  row "pullback restore 10th incremental -> qcow2" pb_restore_10th_qcow2
  row "pullback verify (11 points)" pb_verify
  row "qemu-img convert -O qcow2 (raw copy)" qemu_convert
  local p
  for p in $PEERS; do
    row "$p backup" "${p}_backup" "${p}_stored"
    row "$p restore" "${p}_restore"
  done
  echo
  echo "Incremental after 1%: read $(( $(json_sum pb_inc1 bytes_read) >> 20 )) MiB over NBD, stored $(( $(json_sum pb_inc1 bytes_new) >> 20 )) MiB."
  echo "Incremental after 10%: read $(( $(json_sum pb_inc10 bytes_read) >> 20 )) MiB over NBD, stored $(( $(json_sum pb_inc10 bytes_new) >> 20 )) MiB."
}

echo "building images in $W ..." >&2
make_images
rm -f ./*.m
for ((run = 1; run <= RUNS; run++)); do
  echo "run $run of $RUNS ..." >&2
  ceiling_series
  pullback_series
  sparse_series
  peer_series
done
report
if [ "${CHUNK_SIZES-64K 256K 1M 4M}" != "" ]; then
  echo
  echo "Chunk sizes (bench/core.sh on its own 2 GiB image):"
  echo
  "$TOP/bench/core.sh" 2 "${CHUNK_SIZES-64K 256K 1M 4M}"
fi
