#!/bin/sh
# Installs the Debian packages the build and the tests need, and enables
# deb-src when the machine lacks it. Idempotent; silent when nothing is missing.
# Usage: scripts/setup-host.sh [build|test|all]
set -eu
what=${1:-all}

build_pkgs="build-essential dpkg-dev bc bison flex libelf-dev libssl-dev cpio xz-utils
 gzip rsync file python3 grub-common grub-pc-bin grub-efi-amd64-bin mtools fdisk
 dosfstools e2fsprogs qemu-system-x86 qemu-utils ovmf ca-certificates"
test_pkgs="clang libclang-rt-14-dev python3-pytest iproute2 iptables openssl curl
 dovecot-core dovecot-pop3d dovecot-imapd postfix sasl2-bin libsasl2-modules swaks
 python3-aiosmtpd libnet-ssleay-perl libio-socket-ssl-perl isync unbound dnsmasq-base bind9-dnsutils knot-dnsutils python3-dnspython
 fetchmail maildrop dnsperf busybox chromium chromium-driver python3-selenium"

case $what in
  build) pkgs=$build_pkgs ;;
  test) pkgs="$build_pkgs $test_pkgs" ;;
  all) pkgs="$build_pkgs $test_pkgs" ;;
  *) echo "usage: $0 [build|test|all]" >&2; exit 2 ;;
esac

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

# deb-src: add a Types: deb-src twin of every deb822 entry that lacks one.
need_src=1
if grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
  need_src=0
fi
updated=0
if [ $need_src = 1 ]; then
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ]; then
    sed -n '/^Types: deb$/,/^$/p' "$src" | sed 's/^Types: deb$/Types: deb-src/' |
      $SUDO tee /etc/apt/sources.list.d/postern-src.sources >/dev/null
  elif [ -f /etc/apt/sources.list ]; then
    grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' |
      $SUDO tee /etc/apt/sources.list.d/postern-src.list >/dev/null
  else
    echo "setup-host: no apt sources found to derive deb-src from" >&2; exit 1
  fi
  echo "setup-host: enabled deb-src" >&2
  $SUDO apt-get -qq -o DPkg::Lock::Timeout=600 update
  updated=1
fi

missing=
for p in $pkgs; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case $st in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -n "$missing" ] || exit 0
echo "setup-host: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
[ $updated = 1 ] || $SUDO apt-get -qq -o DPkg::Lock::Timeout=600 update
# shellcheck disable=SC2086
$SUDO apt-get -qq -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $missing >/dev/null
