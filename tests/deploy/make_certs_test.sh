#!/usr/bin/env bash
# deploy/dev/make-certs.sh: the certificates verify (openssl verify, with their purposes and
# names), keys are private, reruns keep what is good, and evalctl-controller serves TLS with them
# (an openssl client verifies the handshake against the CA and 127.0.0.1).
#
#   make_certs_test.sh EVALCTL_CONTROLLER_BINARY
set -euo pipefail

controller_bin=${1:?usage: $0 EVALCTL_CONTROLLER_BINARY}
script="$(cd "$(dirname "$0")/../.." && pwd)/deploy/dev/make-certs.sh"
tmp=$(mktemp -d /tmp/evalctl-make-certs-test.XXXXXX)
controller_pid=
cleanup() {
  if [ -n "$controller_pid" ]; then
    kill "$controller_pid" 2>/dev/null || true
    wait "$controller_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
# expect DESCRIPTION COMMAND...: the command succeeds.
expect() { local what=$1; shift; if "$@" >"$tmp/out" 2>&1; then ok "$what"; else fail "$what: $(cat "$tmp/out")"; fi; }
# refuse DESCRIPTION COMMAND...: the command fails.
refuse() { local what=$1; shift; if "$@" >"$tmp/out" 2>&1; then fail "$what (it succeeded)"; else ok "$what"; fi; }
# same DESCRIPTION A B / differ DESCRIPTION A B
same() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (\"$2\" is not \"$3\")"; fi; }
differ() { if [ "$2" != "$3" ]; then ok "$1"; else fail "$1 (both \"$2\")"; fi; }
fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256; }
mode() { stat -c %a "$1"; }

certs=$tmp/certs
out=$("$script" "$certs" evalctl-test.example 10.9.8.7)
grep -q -- "--tls-cert $certs/server.crt --tls-key $certs/server.key" <<<"$out" ||
  fail "the controller's flags are not printed: $out"
grep -q -- "--tls-ca $certs/ca.crt" <<<"$out" || fail "the agent's flags are not printed: $out"
grep -q -- "--ca-cert $certs/ca.crt" <<<"$out" || fail "evalctl's flags are not printed: $out"

# --- the certificates verify, for their purposes and names
expect "server.crt verifies as a TLS server certificate" \
  openssl verify -CAfile "$certs/ca.crt" -purpose sslserver "$certs/server.crt"
expect "client.crt verifies as a TLS client certificate" \
  openssl verify -CAfile "$certs/ca.crt" -purpose sslclient "$certs/client.crt"
refuse "client.crt is not a server certificate" \
  openssl verify -CAfile "$certs/ca.crt" -purpose sslserver "$certs/client.crt"
for ip in 127.0.0.1 ::1 10.9.8.7; do
  expect "server.crt covers IP $ip" openssl verify -CAfile "$certs/ca.crt" -verify_ip "$ip" "$certs/server.crt"
done
for name in localhost evalctl-test.example; do
  expect "server.crt covers $name" openssl verify -CAfile "$certs/ca.crt" -verify_hostname "$name" "$certs/server.crt"
done
refuse "server.crt does not cover other.example" \
  openssl verify -CAfile "$certs/ca.crt" -verify_hostname other.example "$certs/server.crt"
for k in ca server client; do
  same "$k.key is 0600" "$(mode "$certs/$k.key")" 600
  same "$k.key matches $k.crt" "$(openssl x509 -in "$certs/$k.crt" -noout -pubkey)" \
    "$(openssl pkey -in "$certs/$k.key" -pubout)"
done

# --- reruns: nothing changes; a new name re-issues the server certificate alone, by the same CA
ca_fp=$(fingerprint "$certs/ca.crt")
server_fp=$(fingerprint "$certs/server.crt")
client_fp=$(fingerprint "$certs/client.crt")
out=$("$script" "$certs" evalctl-test.example 10.9.8.7)
grep -q "up to date" <<<"$out" || fail "a rerun does not say it kept everything: $out"
same "a rerun changes nothing" \
  "$(fingerprint "$certs/ca.crt")$(fingerprint "$certs/server.crt")$(fingerprint "$certs/client.crt")" \
  "$ca_fp$server_fp$client_fp"
"$script" "$certs" evalctl-test.example 10.9.8.7 second.example >/dev/null
same "a new name keeps the CA" "$(fingerprint "$certs/ca.crt")" "$ca_fp"
same "a new name keeps the client certificate" "$(fingerprint "$certs/client.crt")" "$client_fp"
differ "a new name re-issues the server certificate" "$(fingerprint "$certs/server.crt")" "$server_fp"
expect "the new server.crt covers second.example" \
  openssl verify -CAfile "$certs/ca.crt" -purpose sslserver -verify_hostname second.example "$certs/server.crt"
same "the new server.key is 0600" "$(mode "$certs/server.key")" 600

# --- --force: a new CA, and certificates of the new CA
cp "$certs/ca.crt" "$tmp/old-ca.crt"
"$script" --force "$certs" evalctl-test.example >/dev/null
differ "--force makes a new CA" "$(fingerprint "$certs/ca.crt")" "$ca_fp"
expect "after --force, server.crt verifies with the new CA" \
  openssl verify -CAfile "$certs/ca.crt" -purpose sslserver "$certs/server.crt"
expect "after --force, client.crt verifies with the new CA" \
  openssl verify -CAfile "$certs/ca.crt" -purpose sslclient "$certs/client.crt"
refuse "after --force, server.crt does not verify with the old CA" \
  openssl verify -CAfile "$tmp/old-ca.crt" "$certs/server.crt"

# --- without names: the host's own
"$script" "$tmp/default" >/dev/null
host=$(hostname -f 2>/dev/null || hostname)
expect "by default server.crt covers $host" \
  openssl verify -CAfile "$tmp/default/ca.crt" -verify_hostname "$host" "$tmp/default/server.crt"
refuse "a name that is no host name is refused" "$script" "$tmp/bad" "bad,name"

# --- evalctl-controller serves TLS with them
log=$tmp/controller.log
"$controller_bin" --listen 127.0.0.1:0 --state-dir "$tmp/controller" --tls-cert "$certs/server.crt" \
  --tls-key "$certs/server.key" >"$log" 2>&1 &
controller_pid=$!
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*(port \([0-9][0-9]*\), TLS).*/\1/p' "$log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 "$controller_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$port" ]; then
  fail "the controller did not start with TLS: $(cat "$log")"
else
  ok "the controller serves TLS on port $port"
  expect "a TLS client verifies the controller (CA, IP 127.0.0.1)" \
    timeout 20 openssl s_client -connect "127.0.0.1:$port" -CAfile "$certs/ca.crt" -verify_ip 127.0.0.1 \
    -verify_return_error -alpn h2 -brief </dev/null
  refuse "a TLS client with another CA does not verify the controller" \
    timeout 20 openssl s_client -connect "127.0.0.1:$port" -CAfile "$tmp/default/ca.crt" \
    -verify_return_error -alpn h2 -brief </dev/null
  grep -q "unable to get local issuer certificate" "$tmp/out" || fail "another CA: $(cat "$tmp/out")"
  refuse "the certificate does not pass for another host name" \
    timeout 20 openssl s_client -connect "127.0.0.1:$port" -CAfile "$certs/ca.crt" \
    -verify_hostname other.example -verify_return_error -alpn h2 -brief </dev/null
  grep -q "hostname mismatch" "$tmp/out" || fail "another host name: $(cat "$tmp/out")"
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all checks passed"
