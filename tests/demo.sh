#!/bin/bash
# demo.sh - pullback's built-in demo: a full and an incremental backup of a
# qcow2 disk served by qemu-nbd, restored and shown to be identical.
#
#   bash tests/demo.sh            (after building; setup.sh runs it)
#   KEEP_TMP=1 bash tests/demo.sh (keep the work directory afterwards)
#
# 1. makes a 1 GiB qcow2 disk with ~360 MiB of mixed data: files from
#    /usr/bin, random data, zeros written as data, and holes;
# 2. adds a persistent dirty bitmap cp1 and serves the disk read-only with
#    qemu-nbd on a Unix socket; pullback init + full backup --checkpoint cp1;
# 3. changes the disk (new data, overwrites, zero writes, a discard), adds
#    bitmap cp2, serves it with the cp1 bitmap exported; incremental backup
#    --since cp1 --bitmap vda=cp1 --checkpoint cp2 (reads only what changed);
# 4. restores the latest point to qcow2 and to raw, and shows that
#    pullback digest of the source == the point's digest (pullback show) ==
#    the digest of each restored image, and that qemu-img compare agrees;
# 5. prints throughput figures, stops its server, exits non-zero on any
#    mismatch.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3 tar

IMG=$T/disk.qcow2 REPO=$T/repo SIZE=$((1 * G))
mb() { "$PYTHON" -c 'import sys; print("%.1f MiB" % (int(sys.argv[1]) / 1048576))' "$1"; }
rate() { "$PYTHON" -c 'import sys; b, s = int(sys.argv[1]), float(sys.argv[2]); print("%.0f MB/s" % (b / 1e6 / s) if s > 0 else "-")' "$1" "$2"; }
report_backup() { # JSON
  local j=$1 d=.disks[0] s
  s=$(json_get "$j" .seconds)
  note "point $(json_get "$j" .point): $(json_get "$j" .mode), $(json_get "$j" "$d.chunks_total") chunks:" \
    "$(json_get "$j" "$d.chunks_read") read, $(json_get "$j" "$d.chunks_zero") zero," \
    "$(json_get "$j" "$d.chunks_kept") kept from the parent, $(json_get "$j" "$d.chunks_new") new"
  note "read $(mb "$(json_get "$j" "$d.bytes_read")") over NBD in ${s}s" \
    "($(rate "$(json_get "$j" "$d.bytes_read")" "$s")), stored $(mb "$(json_get "$j" "$d.bytes_new")") new"
}

step "1. a 1 GiB qcow2 disk: 256 MiB of /usr/bin, 64 MiB random, 32 MiB zeros written as data, holes"
truncate -s "$SIZE" "$T/staging.raw"
(tar -cf - /usr/bin 2>/dev/null || true) | head -c $((256 * M)) |
  dd of="$T/staging.raw" conv=notrunc,sparse bs=1M status=none
head -c $((64 * M)) /dev/urandom | dd of="$T/staging.raw" conv=notrunc bs=1M seek=512 status=none iflag=fullblock
qemu-img convert -f raw -O qcow2 "$T/staging.raw" "$IMG"
rm -f "$T/staging.raw"
qio "$IMG" qcow2 "write -P 0 $((700 * M)) $((32 * M))"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp1
qemu-img info "$IMG" | grep -E 'virtual size|disk size|name:'

step "2. full backup: pullback init; qemu-nbd -r; pullback backup --checkpoint cp1"
pullback init --repo "$REPO"
start_qemu_nbd disk -r -f qcow2 "$IMG"
URI=$(nbd_uri disk)
note "export: $URI"
pullback backup --repo "$REPO" --vm demo --disk "vda=$URI" --checkpoint cp1 --json >"$T/full.json"
stop_server disk
report_backup "$T/full.json"

step "3. change the disk, incremental backup through the dirty bitmap cp1"
randfile "$T/new8" $((8 * M))
qio "$IMG" qcow2 "write -s $T/new8 $((100 * M)) $((8 * M))" "write -P 0xd5 $((600 * M + 4 * K)) $((4 * M))" \
  "write -z $((520 * M)) $((16 * M))" "discard $((10 * M)) $((1 * M))" "write -P 0x42 $((SIZE - 512)) 512"
qemu-img bitmap --add --enable -f qcow2 "$IMG" cp2
start_qemu_nbd disk -r -f qcow2 -B cp1 "$IMG"
pullback backup --repo "$REPO" --vm demo --disk "vda=$URI" --since cp1 --bitmap vda=cp1 --checkpoint cp2 \
  --json >"$T/inc.json"
report_backup "$T/inc.json"
pullback digest "$URI" --repo "$REPO" --json >"$T/source-digest.json"
stop_server disk
pullback list --repo "$REPO"

step "4. restore the latest point to qcow2 and raw; compare digests and contents"
pullback show --repo "$REPO" --point latest --vm demo --json >"$T/show.json"
D_SOURCE=$(json_get "$T/source-digest.json" .digest)
D_POINT=$(json_get "$T/show.json" .disks[0].digest)
note "$(printf '%-40s %s' 'pullback digest of the source export:' "$D_SOURCE")"
note "$(printf '%-40s %s' 'digest of the latest point (show):' "$D_POINT")"
status=0
[ "$D_SOURCE" = "$D_POINT" ] || { echo "MISMATCH: source vs point" >&2; status=1; }
for fmt in qcow2 raw; do
  pullback restore --repo "$REPO" --point latest --vm demo --disk vda --to "$T/restored.$fmt" --format "$fmt" \
    --json >"$T/restore-$fmt.json"
  s=$(json_get "$T/restore-$fmt.json" .seconds)
  D_RESTORED=$(pullback digest "$T/restored.$fmt" --repo "$REPO" --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
  note "restored $fmt: $(mb "$(json_get "$T/restore-$fmt.json" .bytes_written)") written," \
    "$(mb "$(json_get "$T/restore-$fmt.json" .bytes_zero)") left as zero, in ${s}s" \
    "($(rate "$SIZE" "$s") of disk); image uses $(mb "$(allocated_bytes "$T/restored.$fmt")")"
  note "$(printf '%-40s %s' "pullback digest of restored.$fmt:" "$D_RESTORED")"
  [ "$D_RESTORED" = "$D_POINT" ] || { echo "MISMATCH: restored $fmt digest" >&2; status=1; }
  if qemu-img compare -q -f qcow2 -F "$fmt" "$IMG" "$T/restored.$fmt"; then
    note "qemu-img compare disk.qcow2 restored.$fmt: identical"
  else
    echo "MISMATCH: qemu-img compare disk.qcow2 restored.$fmt" >&2
    status=1
  fi
done

step "5. verify the repository"
pullback verify --repo "$REPO" || status=1
note "repository: $(du -sh "$REPO" | cut -f1) for 2 points of a 1 GiB disk"
if [ $status = 0 ]; then
  echo "DEMO OK: source, backup and restored images are identical (digest $D_POINT)"
else
  echo "DEMO FAILED" >&2
fi
exit $status
