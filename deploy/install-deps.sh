#!/usr/bin/env bash
# Installs every Debian 12 package evalctl needs to build, test and run (compilers aside).
# Idempotent: when everything is present it only runs dpkg-query and exits.
set -euo pipefail

PACKAGES=(
  # build
  cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libyaml-cpp-dev libssh-dev libssl-dev prometheus-cpp-dev libsqlite3-dev sqlite3
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev libcpp-httplib-dev
  # python client and its tests
  python3-grpcio python3-grpc-tools python3-omegaconf python3-yaml
  # local Slurm cluster
  slurm-wlm slurmdbd munge mariadb-server
  # ssh tests, promtool, script checks, fuzzing, utilities; openssl for deploy/dev/make-certs.sh
  openssh-server openssh-client prometheus shellcheck clang libclang-rt-14-dev curl procps jq
  openssl
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: must run as root (it installs Debian packages with apt-get)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
