#!/bin/sh
# Builds the third-party components for one architecture and links them into
# LINKDIR. Called by the Makefile:
#
#   scripts/build-thirdparty.sh x86_64 build/x86_64/third-party   (target)
#   scripts/build-thirdparty.sh host   build/host/third-party     (BearSSL only,
#                                                                  host gcc)
#
# Each component is built once into
#   $POSTERN_CACHE/build/<arch>/<name>-<version>-<hash>/
# where <hash> covers everything that shapes the result: the recipe
# (scripts/thirdparty/<name>.sh), the shared build settings
# (scripts/thirdparty/common.sh), extra inputs such as scripts/busybox.config,
# the compiler, the kernel headers and the directories of the components it
# is built with. A .postern-built stamp marks a finished build;
# LINKDIR/<name> is a symlink to that directory. The build log stays in the
# directory (build.log). Old directories are kept: other checkouts share the
# cache (`make distclean` drops it).
#
# Concurrent runs (several checkouts, `make host` beside `make`) are safe:
# each build directory is built under flock(1) on <dir>.lock, and the
# symlinks are replaced atomically.
#
# Environment (exported by the Makefile): POSTERN_CACHE, CROSS_TRIPLE,
# KERNEL_HEADERS, SOURCE_DATE_EPOCH; POSTERN_JOBS (default 2) caps make -j.
set -eu
umask 022
top=$(cd "$(dirname "$0")/.." && pwd)
tpdir=$top/scripts/thirdparty
prog=build-thirdparty

die() { echo "$prog: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 ARCH|host LINKDIR"
ARCH=$1
LINKDIR=$2
cache=${POSTERN_CACHE:-$HOME/.cache/postern}
case $cache in /*) ;; *) cache=$(pwd)/$cache ;; esac
JOBS=${POSTERN_JOBS:-2}

case $ARCH in
  host)
    # The board's cross settings do not concern the host build: clear them
    # so that every board shares one host BearSSL.
    COMPONENTS="bearssl"
    CROSS_TRIPLE= KERNEL_HEADERS=
    CC_ID=$(gcc --version 2>/dev/null | head -n1)
    [ -n "$CC_ID" ] || die "no host gcc"
    KH_ID=host ;;
  *[!a-z0-9_]*|'') die "bad ARCH '$ARCH'" ;;
  *)
    COMPONENTS="musl bearssl busybox iptables e2fsprogs util-linux ca-certificates"
    [ -n "${CROSS_TRIPLE:-}" ] || die "CROSS_TRIPLE is not set (board/*/board.mk sets it)"
    [ -n "${KERNEL_HEADERS:-}" ] || die "KERNEL_HEADERS is not set (board/*/board.mk sets it)"
    CC_ID=$("$CROSS_TRIPLE-gcc" --version 2>/dev/null | head -n1) ||
      die "no compiler $CROSS_TRIPLE-gcc (scripts/setup-host.sh installs it)"
    [ -n "$CC_ID" ] || die "no compiler $CROSS_TRIPLE-gcc (scripts/setup-host.sh installs it)"
    [ -f "$KERNEL_HEADERS/linux/version.h" ] ||
      die "no kernel headers in $KERNEL_HEADERS (linux/version.h missing)"
    KH_ID=$(cat "$KERNEL_HEADERS/linux/version.h") ;;
esac
export ARCH CROSS_TRIPLE="${CROSS_TRIPLE:-}" KERNEL_HEADERS="${KERNEL_HEADERS:-}"

bdir=$cache/build/$ARCH
mkdir -p "$bdir" "$LINKDIR"

# pinned NAME -> Debian version (epoch dropped) from scripts/pins
pinned() {
  v=$(awk -v n="$1" '$1!="#" && $2==n {print $3}' "$top/scripts/pins")
  [ -n "$v" ] || die "$1 is not pinned in scripts/pins"
  echo "${v#*:}"
}

# varname NAME -> shell-safe variable suffix (util-linux -> util_linux)
varname() { echo "$1" | tr -c 'a-zA-Z0-9\n' _; }

# Reads a recipe: sets DEPS (components it is built with, built before it),
# INPUTS (extra files, relative to the top of the checkout), OUTPUTS (files
# it must leave in its directory) and defines build().
load_recipe() {
  DEPS= INPUTS= OUTPUTS=
  [ -f "$tpdir/$1.sh" ] || die "no recipe scripts/thirdparty/$1.sh"
  . "$tpdir/$1.sh"
  for d in $DEPS; do
    eval "[ -n \"\${dir_$(varname "$d"):-}\" ]" ||
      die "$1 needs $d, which is not built before it"
  done
}

# recipe_hash NAME VERSION -> short hash of everything that shapes the build
recipe_hash() {
  {
    printf 'arch=%s\ntriple=%s\nkh=%s\ncc=%s\nname=%s\nversion=%s\n' \
      "$ARCH" "$CROSS_TRIPLE" "$KERNEL_HEADERS" "$CC_ID" "$1" "$2"
    printf '%s\n' "$KH_ID"
    for d in $DEPS; do eval "printf 'dep=%s\n' \"\$dir_$(varname "$d")\""; done
    for f in "$tpdir/common.sh" "$tpdir/$1.sh"; do cat "$f"; done
    for f in $INPUTS; do
      [ -f "$top/$f" ] || die "$1: input $f is missing"
      printf 'input=%s\n' "$f"; cat "$top/$f"
    done
  } | sha256sum | cut -c1-10
}

# relink NAME DIR: LINKDIR/NAME -> DIR, replaced atomically if it changed
relink() {
  l=$LINKDIR/$1
  [ "$(readlink "$l" 2>/dev/null || true)" = "$2" ] && return 0
  [ -e "$l" ] && [ ! -L "$l" ] && die "$l exists and is not a symlink"
  ln -sfn "$2" "$l.tmp.$$"
  mv -Tf "$l.tmp.$$" "$l"
}

# run_build NAME VERSION DIR: builds under the lock, logs to DIR/build.log
run_build() {
  name=$1 version=$2 dir=$3
  exec 9>"$dir.lock"
  flock 9
  if [ ! -f "$dir/.postern-built" ]; then
    echo "$prog: building $name $version for $ARCH" >&2
    src=$("$top/scripts/fetch-sources.sh" --path "$name")
    [ -f "$src/.postern-ok" ] || "$top/scripts/fetch-sources.sh" "$name" ||
      die "cannot fetch the $name source"
    rm -rf "$dir"
    mkdir -p "$dir"
    t0=$(date +%s)
    # The recipe runs in a subshell with set -e in force (not inside an ||).
    set +e
    (
      set -eu
      SRC=$src OUT=$dir WORK=$dir/work VERSION=$version
      . "$tpdir/common.sh"
      mkdir -p "$WORK"
      cd "$WORK"
      build
    ) >"$dir/build.log" 2>&1 </dev/null
    rc=$?
    set -e
    if [ $rc -ne 0 ]; then
      tail -n 30 "$dir/build.log" >&2
      exec 9>&-
      die "building $name failed (exit $rc); log: $dir/build.log, tree: $dir/work"
    fi
    for f in $OUTPUTS; do
      [ -e "$dir/$f" ] || die "$name: the build did not produce $f; log: $dir/build.log"
    done
    rm -rf "$dir/work"
    printf 'built %s\nseconds %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      $(( $(date +%s) - t0 )) >"$dir/.postern-built"
  fi
  exec 9>&-
}

for name in $COMPONENTS; do
  load_recipe "$name"
  version=$(pinned "$name")
  hash=$(recipe_hash "$name" "$version")
  dir=$bdir/$name-$version-$hash
  [ -f "$dir/.postern-built" ] || run_build "$name" "$version" "$dir"
  eval "dir_$(varname "$name")=\$dir"
  relink "$name" "$dir"
done
