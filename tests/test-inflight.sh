#!/bin/bash
# test-inflight.sh - a backup with many NBD reads in flight, answered out
# of order, through several worker threads, is exact.
#
# The server is nbdkit's eval plugin with the parallel thread model: each
# read sleeps 0 to 30 ms depending on its offset, so replies come back in
# another order than the requests went out.  nbdkit's log filter records
# every request and its reply.
#
# Proves:
#  - with --requests 16 --threads 3, the log shows several reads in flight
#    at once (at least 4) and replies out of order (a read issued later is
#    answered before an earlier one);
#  - the point restores bit-exact, its counters add up (read + zero =
#    total, every byte read exactly once), verify passes;
#  - a second backup with --requests 1 (one read at a time: never more
#    than one in flight in the log) gives the same digest, and stores
#    nothing new;
#  - --requests out of range is a usage error (exit 2).
source "$(dirname "$0")/functions.sh"
requires nbdkit python3

IMG=$T/disk.raw REPO=$T/repo CS=$((256 * 1024)) SIZE=$MIXED_SIZE

step "image: 24 MiB of random data, zeros and repeated blocks"
mixed_image "$IMG"
pullback init --repo "$REPO"

# slow_server NAME LOG: the image, each read delayed by (chunk index * 7) mod 4 * 10 ms
slow_server() {
  start_nbdkit "$1" --filter=log eval logfile="$2" \
    thread_model='echo parallel' \
    get_size="echo $SIZE" \
    pread='sleep 0.0$(( ($4 / 262144 * 7) % 4 ))
           dd if='"$IMG"' iflag=skip_bytes,count_bytes skip=$4 count=$3 status=none'
}

# inflight LOG: "MAX OUT_OF_ORDER" for the reads in nbdkit's log
inflight() {
  "$PYTHON" - "$1" <<'EOF'
import re, sys
cur = best = 0
done = []
for line in open(sys.argv[1]):
    m = re.search(r'Read id=(\d+)', line)
    if not m:
        continue
    if 'return=' in line:
        cur -= 1
        done.append(int(m.group(1)))
    else:
        cur += 1
        best = max(best, cur)
ooo = sum(1 for a, b in zip(done, done[1:]) if b < a)
print(best, ooo)
EOF
}

step "backup with --requests 16 --threads 3: many in flight, out of order"
slow_server slow "$T/log1"
pullback backup --repo "$REPO" --vm v --disk "vda=$(nbd_uri slow)" --requests 16 --threads 3 \
  --json >"$T/b1.json"
stop_server slow
read -r MAX OOO < <(inflight "$T/log1")
note "reads in flight at most: $MAX; replies out of order: $OOO"
[ "$MAX" -ge 4 ] || fail "at most $MAX reads in flight (expected >= 4): $(head -n 20 "$T/log1")"
[ "$OOO" -ge 1 ] || fail "no reply came out of order: $(head -n 20 "$T/log1")"
[ "$(json_get "$T/b1.json" .disks[0].bytes_read)" = "$SIZE" ] ||
  fail "bytes_read $(json_get "$T/b1.json" .disks[0].bytes_read), expected $SIZE"
READ=$(json_get "$T/b1.json" .disks[0].chunks_read)
ZERO=$(json_get "$T/b1.json" .disks[0].chunks_zero)
[ $((READ + ZERO)) = $((SIZE / CS)) ] && [ "$ZERO" = $((4 * M / CS)) ] ||
  fail "chunks read $READ + zero $ZERO, expected $((SIZE / CS)) with $((4 * M / CS)) zero"
pullback restore --repo "$REPO" --point latest --vm v --disk vda --to "$T/out.raw"
cmp "$IMG" "$T/out.raw" || fail "restored image differs"
pullback verify --repo "$REPO" >/dev/null

step "the same with --requests 1: one read at a time, same digest, nothing new"
slow_server slow "$T/log2"
pullback backup --repo "$REPO" --vm v --disk "vda=$(nbd_uri slow)" --requests 1 \
  --json >"$T/b2.json"
stop_server slow
read -r MAX OOO < <(inflight "$T/log2")
note "reads in flight at most: $MAX"
[ "$MAX" = 1 ] || fail "--requests 1: $MAX reads in flight"
[ "$(json_get "$T/b1.json" .disks[0].digest)" = "$(json_get "$T/b2.json" .disks[0].digest)" ] ||
  fail "digests differ"
[ "$(json_get "$T/b2.json" .disks[0].chunks_new)" = 0 ] || fail "second backup stored new chunks"

step "--requests out of range [2]"
for bad in 0 65 x -1; do
  expect_fail 2 pullback backup --repo "$REPO" --vm v --disk "vda=nbd+unix:///?socket=$T/none" \
    --requests "$bad"
  expect_err "--requests"
done
echo "test-inflight: ok"
