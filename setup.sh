#!/bin/bash
# setup.sh - the first command on a fresh Debian 12 machine (as root, or a
# user with sudo): installs everything needed to build pullback and to run
# all of its tests, builds it, and runs the demo (tests/demo.sh).
#
#   ./setup.sh                 install + build + demo
#   SETUP_NO_DEMO=1 ./setup.sh install + build only
#
# Idempotent: packages already installed are not touched (apt-get runs only
# when something is missing), the build is redone from autoreconf on.
# Non-interactive.
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
export PATH=$PATH:/usr/sbin:/sbin

SUDO=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: run as root (or install sudo)" >&2; exit 1; }
  SUDO="sudo -E"
fi

PACKAGES=(
  # build
  build-essential autoconf automake libtool pkg-config
  libnbd-dev libzstd-dev libsqlite3-dev libssl-dev libjson-c-dev
  # NBD servers and clients, images
  libnbd-bin nbdkit qemu-utils
  # live QEMU and libvirt tests
  qemu-system-x86 libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
  # test tools
  python3 valgrind sqlite3 zstd jq procps coreutils tar util-linux openssl
)
# libvirt-daemon-system needs an init flavour: keep systemd's where systemd
# runs, else (containers, CI machines without an init system) the sysv one.
if [ ! -d /run/systemd/system ]; then PACKAGES+=(libvirt-daemon-system-sysv); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then missing+=("$p"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  $SUDO apt-get update -q
  for p in "${missing[@]}"; do
    if [ -z "$(apt-cache policy "$p" | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; then
      echo "setup.sh: package $p is not available from the configured apt sources" >&2
      exit 1
    fi
  done
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup.sh: all ${#PACKAGES[@]} packages already installed"
fi

echo "setup.sh: building"
autoreconf -fi
./configure --enable-werror
make -j"$(nproc)"

if [ -z "${SETUP_NO_DEMO:-}" ]; then
  echo "setup.sh: running the demo (tests/demo.sh)"
  bash tests/demo.sh
fi
echo "setup.sh: done. Next: make check"
