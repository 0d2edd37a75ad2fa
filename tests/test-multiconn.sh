#!/bin/bash
# test-multiconn.sh - a backup spreads its reads over several NBD
# connections when the server advertises multi-conn, and only then.
#
# The server is nbdkit's eval plugin with the serialize_requests thread
# model: one request at a time on each connection, several connections
# served in parallel.  Each read sleeps 10 ms, so reads overlap only if
# they go over different connections.  nbdkit's log filter records every
# request and its reply with the connection it came on ("connection=N").
#
# Proves:
#  - with multi-conn advertised and the default --connections (4), the
#    reads arrive on 4 distinct connections, more than one is in flight at
#    once (across connections: each one serialises), JSON
#    disks[].connections is 4; the point restores bit-exact, every chunk is
#    read exactly once (in every step), verify passes;
#  - --connections 1: every read on one connection, connections = 1, same
#    digest;
#  - a server that does not advertise multi-conn gets one connection even
#    with --connections 8 (connections = 1, same digest);
#  - a server that refuses clients beyond 2 (limit filter): pullback tries a
#    third, is refused, and goes on with the two it has (connections = 2),
#    same digest, verify passes;
#  - --connections out of range is a usage error (exit 2).
source "$(dirname "$0")/functions.sh"
requires nbdkit python3

IMG=$T/disk.raw REPO=$T/repo CS=$((256 * 1024)) SIZE=$MIXED_SIZE

step "image: 24 MiB of random data, zeros and repeated blocks"
mixed_image "$IMG"
pullback init --repo "$REPO"

# mc_server NAME LOG MULTI_CONN [--filter=F...] [F_PARAM=V...]: the image,
# one request at a time per connection, each read delayed by 10 ms;
# MULTI_CONN 0 advertises multi-conn, 3 (eval's "missing") does not.  Extra
# filters go before log (outside it: log sees only the clients they let
# through), their parameters after the plugin.
mc_server() {
  local name=$1 log=$2 mc=$3 a filters=() params=()
  shift 3
  for a in "$@"; do
    case $a in
    --filter=*) filters+=("$a") ;;
    *) params+=("$a") ;;
    esac
  done
  start_nbdkit "$name" "${filters[@]}" --filter=log eval logfile="$log" "${params[@]}" \
    thread_model='echo serialize_requests' \
    can_multi_conn="exit $mc" \
    get_size="echo $SIZE" \
    pread='sleep 0.01
           dd if='"$IMG"' iflag=skip_bytes,count_bytes skip=$4 count=$3 status=none'
}

# conns LOG: "CONNECTIONS READS MAX" - how many distinct connections carried
# reads, how many reads there were, and the most reads in flight at once
# (over all connections) in nbdkit's log.  Read ids count per connection.
conns() {
  "$PYTHON" - "$1" <<'EOF'
import re, sys
cur = best = reads = 0
seen, open_ = set(), set()
for line in open(sys.argv[1]):
    m = re.search(r'connection=(\d+) (\.\.\.)?Read id=(\d+)', line)
    if not m:
        continue
    key = (m.group(1), m.group(3))
    if m.group(2):  # "...Read id=N return=": the reply
        if key not in open_:
            sys.exit("reply without request: " + line)
        open_.discard(key)
        cur -= 1
    else:
        seen.add(m.group(1))
        open_.add(key)
        reads += 1
        cur += 1
        best = max(best, cur)
if open_:
    sys.exit("requests without reply: %s" % sorted(open_))
print(len(seen), reads, best)
EOF
}

# check_backup JSON LOG WANT_CONNS: the log shows reads on WANT_CONNS
# connections and JSON says the disk used WANT_CONNS connections.
check_backup() {
  local json=$1 log=$2 want=$3 n reads max got
  read -r n reads max < <(conns "$log")
  got=$(json_get "$json" .disks[0].connections)
  note "reads: $reads on $n connection(s), at most $max in flight; JSON connections: $got"
  [ "$n" = "$want" ] ||
    fail "reads came on $n connection(s), expected $want: $(grep -c Connect "$log") Connect lines; $(grep 'Read id' "$log" | head -n 8)"
  [ "$got" = "$want" ] || fail "JSON disks[0].connections is $got, expected $want"
  [ "$reads" = $((SIZE / CS)) ] || fail "$reads reads in the log, expected one per chunk: $((SIZE / CS))"
  MAX=$max
}

step "multi-conn advertised, default --connections: 4 connections in parallel"
mc_server mc "$T/log1" 0
pullback backup --repo "$REPO" --vm v --disk "vda=$(nbd_uri mc)" --json >"$T/b1.json"
stop_server mc
check_backup "$T/b1.json" "$T/log1" 4
[ "$MAX" -ge 2 ] || fail "never more than $MAX read in flight over 4 serialising connections"
[ "$(json_get "$T/b1.json" .disks[0].bytes_read)" = "$SIZE" ] ||
  fail "bytes_read $(json_get "$T/b1.json" .disks[0].bytes_read), expected $SIZE"
READ=$(json_get "$T/b1.json" .disks[0].chunks_read)
ZERO=$(json_get "$T/b1.json" .disks[0].chunks_zero)
[ $((READ + ZERO)) = $((SIZE / CS)) ] && [ "$ZERO" = $((4 * M / CS)) ] ||
  fail "chunks read $READ + zero $ZERO, expected $((SIZE / CS)) with $((4 * M / CS)) zero"
check_counts "$T/b1.json"
pullback restore --repo "$REPO" --point latest --vm v --disk vda --to "$T/out.raw"
cmp "$IMG" "$T/out.raw" || fail "restored image differs"
pullback verify --repo "$REPO" >/dev/null
DIGEST=$(json_get "$T/b1.json" .disks[0].digest)

step "--connections 1: one connection, same digest"
mc_server mc "$T/log2" 0
pullback backup --repo "$REPO" --vm v --disk "vda=$(nbd_uri mc)" --connections 1 \
  --json >"$T/b2.json"
stop_server mc
check_backup "$T/b2.json" "$T/log2" 1
[ "$MAX" = 1 ] || fail "$MAX reads in flight on one serialising connection"
[ "$(json_get "$T/b2.json" .disks[0].digest)" = "$DIGEST" ] || fail "digests differ"

step "no multi-conn advertised, --connections 8: one connection, same digest"
mc_server single "$T/log3" 3
pullback backup --repo "$REPO" --vm v --disk "vda=$(nbd_uri single)" --connections 8 \
  --json >"$T/b3.json"
stop_server single
check_backup "$T/b3.json" "$T/log3" 1
[ "$(json_get "$T/b3.json" .disks[0].digest)" = "$DIGEST" ] || fail "digests differ"

step "server refusing a third client (limit=2): goes on with 2 connections"
mc_server limited "$T/log4" 0 --filter=limit limit=2
pullback backup --repo "$REPO" --vm v --disk "vda=$(nbd_uri limited)" \
  --json >"$T/b4.json" 2>"$T/b4.err"
stop_server limited
if [ -s "$T/b4.err" ]; then note "stderr: $(head -n 3 "$T/b4.err" | tr "\n" " ")"; fi
check_backup "$T/b4.json" "$T/log4" 2
# The limit filter refuses a client after its preconnect: the log (inside
# it) sees a third client arrive but only two connect.
PRE=$(grep -c ' Preconnect id=' "$T/log4" || true)
CON=$(grep -c '^[^ ]* [^ ]* connection=[0-9]* Connect ' "$T/log4" || true)
note "clients: $PRE arrived, $CON connected"
[ "$PRE" -ge 3 ] && [ "$CON" = 2 ] ||
  fail "expected a third client refused: $PRE preconnect(s), $CON connect(s): $(grep -i connect "$T/log4")"
[ "$(json_get "$T/b4.json" .disks[0].digest)" = "$DIGEST" ] || fail "digests differ"
pullback verify --repo "$REPO" >/dev/null

step "--connections out of range [2]"
for bad in 0 17 x -1; do
  expect_fail 2 pullback backup --repo "$REPO" --vm v --disk "vda=nbd+unix:///?socket=$T/none" \
    --connections "$bad"
  expect_err "--connections"
done
echo "test-multiconn: ok"
