#!/usr/bin/env bash
# Creates a development CA and the certificates for evalctl's TLS mode:
#
#   deploy/dev/make-certs.sh [--force] DIR [SERVER_NAME...]
#
#   DIR/ca.crt, ca.key          the CA (10 years); agents and clients trust ca.crt
#   DIR/server.crt, server.key  evalctl-controller's certificate (825 days); subjectAltName
#                               127.0.0.1, ::1, localhost and each SERVER_NAME (a host name or an
#                               IP address; without any, `hostname -f` and `hostname`)
#   DIR/client.crt, client.key  a client certificate signed by the CA, for mutual TLS
#                               (evalctl-agent --tls-cert/--tls-key, evalctl --client-cert and
#                               --client-key)
#
# Keys are mode 0600. Idempotent: an existing CA is kept (a new one only with --force, which
# also replaces both certificates). A certificate is kept while the CA verifies it, it is valid
# for 30 more days and (the server's) it covers every name asked for; otherwise it is issued
# again, with a new key, by the same CA, so agents that trust ca.crt need nothing new.
# For development and tests: a production deployment gets its certificates from its own CA.
set -euo pipefail

usage() {
  echo "usage: $0 [--force] DIR [SERVER_NAME...]" >&2
  exit 2
}

force=0
args=()
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*) echo "make-certs.sh: unknown option $a" >&2; usage ;;
    *) args+=("$a") ;;
  esac
done
[ ${#args[@]} -ge 1 ] || usage
dir=${args[0]}
names=("${args[@]:1}")

command -v openssl >/dev/null || {
  echo "make-certs.sh: openssl is missing (deploy/install-deps.sh installs it)" >&2
  exit 1
}

if [ ${#names[@]} -eq 0 ]; then
  for n in "$(hostname -f 2>/dev/null || true)" "$(hostname 2>/dev/null || true)"; do
    [ -n "$n" ] && names+=("$n")
  done
fi

# subjectAltName entries: loopback always, then each name as an IP or a DNS entry.
is_ipv4() { [[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; }
is_ipv6() { [[ "$1" == *:* && "$1" =~ ^[0-9A-Fa-f:.]+$ ]]; }
san_list=("IP:127.0.0.1" "IP:::1" "DNS:localhost")
for n in "${names[@]}"; do
  if is_ipv4 "$n" || is_ipv6 "$n"; then
    entry="IP:$n"
  elif [[ "$n" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]]; then
    entry="DNS:$n"
  else
    echo "make-certs.sh: \"$n\" is neither a host name nor an IP address" >&2
    exit 2
  fi
  case " ${san_list[*]} " in *" $entry "*) ;; *) san_list+=("$entry") ;; esac
done
san=$(IFS=,; echo "${san_list[*]}")

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
work=$(mktemp -d "$dir/.make-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Only what is given here: no extensions from the system's openssl.cnf.
printf '%s\n' "[req]" "distinguished_name = dn" "[dn]" >"$work/openssl.cnf"
export OPENSSL_CONF="$work/openssl.cnf"

# Runs an openssl command quietly; on failure shows its output and stops.
ossl() {
  local out
  if ! out=$(openssl "$@" 2>&1); then
    echo "make-certs.sh: openssl $1 failed: $out" >&2
    exit 1
  fi
}
# A fresh key (P-256, mode 0600) at $1.
new_key() { (umask 077 && ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"); }
serial() { echo "0x$(openssl rand -hex 16)"; }
# True when $1 was signed by the CA, is valid for at least 30 more days, and has purpose $2.
still_good() {
  [ -s "$1" ] && [ -s "${1%.crt}.key" ] &&
    openssl verify -CAfile "$dir/ca.crt" -purpose "$2" "$1" >/dev/null 2>&1 &&
    openssl x509 -in "$1" -noout -checkend $((30 * 86400)) >/dev/null 2>&1
}
# Installs $work/$1.{key,crt} as $dir/$1.{key,crt}.
install_pair() {
  chmod 0600 "$work/$1.key"
  chmod 0644 "$work/$1.crt"
  mv -f "$work/$1.key" "$dir/$1.key"
  mv -f "$work/$1.crt" "$dir/$1.crt"
}

changed=()

# --- CA
if [ $force -eq 1 ] || [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
  new_key "$work/ca.key"
  ossl req -config "$OPENSSL_CONF" -x509 -new -key "$work/ca.key" -sha256 -days 3650 \
    -set_serial "$(serial)" \
    -subj "/O=evalctl development/CN=evalctl development CA $(date -u +%Y%m%dT%H%M%SZ)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$work/ca.crt"
  install_pair ca
  changed+=("ca.crt")
  rm -f "$dir/server.crt" "$dir/client.crt"  # signed by the old CA
fi
chmod 0600 "$dir/ca.key"

# --- leaf certificates: $1 name, $2 CN, $3 extensions
issue() {
  new_key "$work/$1.key"
  ossl req -config "$OPENSSL_CONF" -new -key "$work/$1.key" -subj "/O=evalctl development/CN=$2" \
    -out "$work/$1.csr"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "subjectKeyIdentifier=hash" \
    "authorityKeyIdentifier=keyid,issuer" "$3" >"$work/$1.ext"
  ossl x509 -req -in "$work/$1.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "$(serial)" -days 825 -sha256 -extfile "$work/$1.ext" -out "$work/$1.crt"
  install_pair "$1"
  changed+=("$1.crt")
}

server_ok=0
if still_good "$dir/server.crt" sslserver; then
  server_ok=1
  for entry in "${san_list[@]}"; do
    case "$entry" in
      IP:*) check=(-verify_ip "${entry#IP:}") ;;
      *) check=(-verify_hostname "${entry#DNS:}") ;;
    esac
    openssl verify -CAfile "$dir/ca.crt" -purpose sslserver "${check[@]}" "$dir/server.crt" \
      >/dev/null 2>&1 || { server_ok=0; break; }
  done
fi
if [ $server_ok -eq 0 ]; then
  issue server evalctl-controller \
    "keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san"
fi
if ! still_good "$dir/client.crt" sslclient; then
  issue client evalctl-agent \
    "keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
fi
chmod 0600 "$dir/server.key" "$dir/client.key"

if [ ${#changed[@]} -eq 0 ]; then
  echo "make-certs.sh: $dir is up to date (CA, server and client certificates kept)"
else
  echo "make-certs.sh: wrote ${changed[*]} in $dir"
fi
cat <<EOF
server certificate names: ${san//,/, }

evalctl-controller (TLS; agents and users present bearer tokens):
  evalctl-controller --listen 0.0.0.0:50051 --tls-cert $dir/server.crt --tls-key $dir/server.key \\
      --admin-token-file ADMIN_TOKEN_FILE
  mutual TLS (agents must show client.crt): add --tls-client-ca $dir/ca.crt --require-client-cert

evalctl-agent (TOKEN_FILE: a one-time token from \`evalctl cluster enroll CLUSTER --unix-user USER\`):
  evalctl-agent --controller HOST:50051 --tls-ca $dir/ca.crt --token-file TOKEN_FILE ...
  mutual TLS: add --tls-cert $dir/client.crt --tls-key $dir/client.key

evalctl (token: EVALCTL_TOKEN_FILE=ADMIN_TOKEN_FILE or --token-file; CA: EVALCTL_CA_CERT or --ca-cert):
  evalctl --controller HOST:50051 --ca-cert $dir/ca.crt ...
  mutual TLS: add --client-cert $dir/client.crt --client-key $dir/client.key
EOF
