#!/bin/bash
# test-tls.sh - backups over NBD with TLS, against a real qemu-nbd.
#
# Set-up: a CA, a server and a client certificate made with openssl; a PSK
# file; a qcow2 image served by qemu-nbd with tls-creds-x509 (mutual
# authentication: the server checks the client's certificate too), with
# tls-creds-psk, and without TLS.
#
# Proves:
#  - a full backup over nbds+unix:// with X.509 certificates and one with a
#    PSK restore bit-exact;
#  - refused, with nothing recorded: --tls require against a server that
#    does not offer TLS; a client without a client certificate; over TCP
#    (127.0.0.1), a server whose certificate another CA signed; a wrong PSK; a missing certificate directory (before connecting);
#    --tls require with a plain nbd:// URI; --tls off with an nbds URI;
#    --tls bogus; certificates and PSK together;
#  - the PSK (read from a file, never an argument) is in no output.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd openssl python3

IMG=$T/disk.qcow2 REPO=$T/repo SIZE=$((32 * M))
randfile "$T/r1" $((2 * M))
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
qio "$IMG" qcow2 "write -s $T/r1 $((4 * M)) $((2 * M))" "write -P 0x3c $((20 * M)) $((1 * M))"
save_raw "$IMG" qcow2 "$T/disk.raw"
pullback init --repo "$REPO"

step "certificates: a CA, a server and a client (openssl)"
PKI=$T/pki
mkdir -p "$PKI/server" "$PKI/client" "$PKI/other"
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "$@" 2>/dev/null; }
ec -x509 -keyout "$PKI/ca-key.pem" -out "$PKI/ca-cert.pem" -days 2 -subj "/CN=pullback test CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
ec -x509 -keyout "$PKI/other/ca-key.pem" -out "$PKI/other/ca-cert.pem" -days 2 -subj "/CN=another CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
sign() { # NAME CN USAGE OUTDIR
  ec -keyout "$4/$1-key.pem" -out "$T/$1.csr" -subj "/CN=$2"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=%s\nkeyUsage=digitalSignature\n' "$3" >"$T/$1.ext"
  openssl x509 -req -in "$T/$1.csr" -CA "$PKI/ca-cert.pem" -CAkey "$PKI/ca-key.pem" -CAcreateserial \
    -out "$4/$1-cert.pem" -days 2 -extfile "$T/$1.ext" 2>/dev/null
}
sign server localhost serverAuth "$PKI/server"
sign client pullback clientAuth "$PKI/client"
cp "$PKI/ca-cert.pem" "$PKI/server/"
cp "$PKI/ca-cert.pem" "$PKI/client/"
cp "$PKI/client/client-cert.pem" "$PKI/client/client-key.pem" "$PKI/other/"
mkdir -p "$T/psk"
PSK=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "alice:$PSK" >"$T/psk/keys.psk"
echo "alice:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$T/wrong.psk"

tls_uri() { echo "nbds+unix:///?socket=$T/$1.sock"; }
snapshot() { point_ids "$REPO" >"$T/before.points"; }
unchanged() { [ "$(point_ids "$REPO")" = "$(cat "$T/before.points")" ] || fail "a point was recorded"; }

step "X.509: qemu-nbd with tls-creds-x509 (client certificates checked)"
start_qemu_nbd x509 -r -f qcow2 --object "tls-creds-x509,id=tls0,dir=$PKI/server,endpoint=server,verify-peer=on" \
  --tls-creds tls0 "$IMG"
pullback backup --repo "$REPO" --vm v --disk "vda=$(tls_uri x509)" --tls-certs "$PKI/client" --json >"$T/b1.json"
check_restore "$REPO" "$(json_get "$T/b1.json" .point)" v vda "$T/disk.raw"
snapshot
mkdir -p "$T/nocert"; cp "$PKI/ca-cert.pem" "$T/nocert/"
expect_fail 4 pullback backup --repo "$REPO" --vm v --disk "vda=$(tls_uri x509)" --tls-certs "$T/nocert"
expect_err "tls"
stop_server x509

step "X.509 over TCP on 127.0.0.1: a server certificate from another CA is refused"
# libnbd checks the server's certificate against the host name, which a
# Unix socket does not have: this check needs TCP.
PORT=$((20000 + RANDOM % 20000))
qemu-nbd -r -f qcow2 --object "tls-creds-x509,id=tls0,dir=$PKI/server,endpoint=server,verify-peer=on" \
  --tls-creds tls0 -b 127.0.0.1 -p "$PORT" --persistent --fork --pid-file="$T/tcp.pid" "$IMG" 2>>"$T/tcp.log"
track_pid "$(cat "$T/tcp.pid")"
pullback backup --repo "$REPO" --vm t --disk "vda=nbds://localhost:$PORT/" --tls-certs "$PKI/client" --json >"$T/b3.json"
[ "$(json_get "$T/b3.json" .mode)" = full ] || fail "backup over TCP + TLS"
snapshot
expect_fail 4 pullback backup --repo "$REPO" --vm t --disk "vda=nbds://localhost:$PORT/" --tls-certs "$PKI/other"
expect_err "certificate"
unchanged
stop_pid "$(cat "$T/tcp.pid")"
start_qemu_nbd x509 -r -f qcow2 --object "tls-creds-x509,id=tls0,dir=$PKI/server,endpoint=server,verify-peer=on" \
  --tls-creds tls0 "$IMG"
expect_fail 2 pullback backup --repo "$REPO" --vm v --disk "vda=$(tls_uri x509)" --tls-certs "$T/nonexistent"
expect_err "nonexistent"
expect_fail 2 pullback backup --repo "$REPO" --vm v --disk "vda=$(tls_uri x509)" --tls-certs "$PKI/client" --tls-psk "$T/psk/keys.psk"
expect_err "not both"
expect_fail 2 pullback backup --repo "$REPO" --vm v --disk "vda=$(tls_uri x509)" --tls off
expect_err "TLS off"
expect_fail 2 pullback backup --repo "$REPO" --vm v --disk "vda=$(tls_uri x509)" --tls bogus
expect_err "--tls"
unchanged
stop_server x509

step "PSK: qemu-nbd with tls-creds-psk"
start_qemu_nbd psk -r -f qcow2 --object "tls-creds-psk,id=tls0,dir=$T/psk,endpoint=server" --tls-creds tls0 "$IMG"
pullback backup --repo "$REPO" --vm p --disk "vda=$(tls_uri psk)" --tls-psk "$T/psk/keys.psk" \
  --tls-username alice --json >"$T/b2.json" 2>"$T/b2.err"
check_restore "$REPO" "$(json_get "$T/b2.json" .point)" p vda "$T/disk.raw"
snapshot
expect_fail 4 pullback backup --repo "$REPO" --vm p --disk "vda=$(tls_uri psk)" --tls-psk "$T/wrong.psk" --tls-username alice
unchanged
stop_server psk

step "--tls require against a server without TLS, and with an nbd:// URI"
start_qemu_nbd plain -r -f qcow2 "$IMG"
expect_fail 4 pullback backup --repo "$REPO" --vm q --disk "vda=$(tls_uri plain)" --tls require --tls-certs "$PKI/client"
expect_err "tls"
expect_fail 2 pullback backup --repo "$REPO" --vm q --disk "vda=$(nbd_uri plain)" --tls require
expect_err "nbds://"
unchanged
stop_server plain

step "the PSK is in no output"
for f in "$T"/*.json "$T"/*.err "$T"/last.*; do
  [ -e "$f" ] || continue
  grep -qiF "$PSK" "$f" && fail "the PSK is in $f"
done
echo PASS
