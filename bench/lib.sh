# pullback - bench/lib.sh: helpers shared by the bench scripts (sourced).
#
# Needs GIB (image size in GiB) and W (the work directory, current
# directory) set by the caller.

secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {print b - a}'; }
# median: the median of the numbers on stdin, one a line (the lower of the
# two middle ones for an even count).
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
mbps() { awk -v n="$1" -v t="$2" 'BEGIN {printf "%d", n / 1048576 / t}'; }
json() { # FILE dotted.path (list indices as numbers)
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    d = d[int(k)] if k.isdigit() else d[k]
print(d)' "$1" "$2"; }

# Start a timed command from the same state every time: dirty pages of
# the previous run written out and, when we may (root), the page cache
# dropped.  Without this, one run's writeback lands in the next run's
# time, and which tool or mode runs second decides the result.
settle() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 1 > /proc/sys/vm/drop_caches; fi
}

# Fill stripes with real file content through qemu-nbd (qemu-img dd cannot
# write into the middle of an image).
fill_image() {
  local stripe=$((64 << 20)) n=$((GIB * 16)) i sys rsz ssz
  qemu-img create -q -f qcow2 disk.qcow2 "${GIB}G"
  find /usr/bin /usr/lib /usr/share/doc -type f 2>/dev/null | head -n 20000 |
    xargs cat 2>/dev/null | head -c $((GIB << 29)) > sys.bin || true
  head -c $((GIB << 28)) /dev/urandom > rnd.bin
  ssz=$(stat -c %s sys.bin); rsz=$(stat -c %s rnd.bin)
  qemu-nbd -f qcow2 --persistent --socket="$W/w.sock" --fork --pid-file="$W/w.pid" disk.qcow2
  for ((i = 0; i < n; i++)); do
    case $((i % 4)) in
      0|1) off=$(( (i / 4 * 2 + i % 4) * stripe % (ssz - stripe) )); f=sys.bin ;;
      2) off=$(( (i / 4) * stripe % (rsz - stripe) )); f=rnd.bin ;;
      3) continue ;;
    esac
    qemu-img convert -n --image-opts "driver=raw,offset=$off,size=$stripe,file.driver=file,file.filename=$W/$f" \
      --target-image-opts "driver=raw,offset=$((i * stripe)),size=$stripe,file.driver=nbd,file.server.type=unix,file.server.path=$W/w.sock" ||
      { kill "$(cat w.pid)"; return 1; }  # do not leave the server behind
  done
  kill "$(cat w.pid)"; sleep 0.5
  rm -f sys.bin rnd.bin
}

# Bytes of disk.qcow2 that hold data.
data_bytes() {
  qemu-img map --output=json -f qcow2 disk.qcow2 | python3 -c '
import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))'
}
