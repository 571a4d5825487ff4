#!/bin/sh
# Builds the Linux kernel for a board and copies its image to OUT.
#
#   scripts/build-kernel.sh BOARD_DIR OUT
#
# The configuration is `make tinyconfig` + BOARD_DIR/kernel.config (merged with
# merge_config.sh -n) + olddefconfig; every option the fragment sets must keep
# its value in the final .config, or the build fails naming the options that
# did not stick. The build is out of tree in
#   $POSTERN_CACHE/build/<board>/linux-<pinned version>-<hash>/
# where <hash> covers the fragment, this script, the arch and CROSS_COMPILE,
# so a change to any of them starts a fresh configuration. The kernel embeds
# its build time (from SOURCE_DATE_EPOCH, the last commit's), so each epoch's
# finished image is kept under images/<epoch>/ in that folder with a stamp:
# with nothing changed make is not run at all, and checkouts at different
# commits sharing the cache relink at most once each (the newest few epochs are
# kept). OUT is only rewritten when the image bytes differ, so its mtime tells
# a real change.
#
# Environment (the top-level Makefile exports these from board.mk; when unset
# they are read from BOARD_DIR/board.mk): KERNEL_ARCH (make ARCH=),
# KERNEL_IMAGE (path of the image in the build tree), SOURCE_DATE_EPOCH
# (build timestamp), POSTERN_CACHE, CROSS_COMPILE (passed through to kbuild),
# KERNEL_JOBS (make -j, default 2).
set -eu

die() { echo "build-kernel: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 BOARD_DIR OUT"
top=$(cd "$(dirname "$0")/.." && pwd)
script=$top/scripts/$(basename "$0")
board_dir=$1
[ -d "$board_dir" ] || board_dir=$top/$1
[ -d "$board_dir" ] || die "no board folder $1"
board_dir=$(cd "$board_dir" && pwd)
board=$(basename "$board_dir")
frag=$board_dir/kernel.config
[ -f "$frag" ] || die "$frag is missing"
case $2 in /*) out=$2 ;; *) out=$(pwd)/$2 ;; esac

board_var() { # board_var NAME -> value of NAME := ... in board.mk
  sed -n "s/^$1[[:space:]]*[:?]*=[[:space:]]*//p" "$board_dir/board.mk" | tail -n1
}
KERNEL_ARCH=${KERNEL_ARCH:-$(board_var KERNEL_ARCH)}
KERNEL_IMAGE=${KERNEL_IMAGE:-$(board_var KERNEL_IMAGE)}
[ -n "$KERNEL_ARCH" ] || die "KERNEL_ARCH is not set (nor in $board_dir/board.mk)"
[ -n "$KERNEL_IMAGE" ] || die "KERNEL_IMAGE is not set (nor in $board_dir/board.mk)"
CROSS_COMPILE=${CROSS_COMPILE:-}
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2>/dev/null || echo 1700000000)
fi
case $SOURCE_DATE_EPOCH in ''|*[!0-9]*) die "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH is not a number" ;; esac
cache=${POSTERN_CACHE:-$HOME/.cache/postern}
jobs=${KERNEL_JOBS:-2}

ver=$(awk '$1=="deb" && $2=="linux-source-6.1" {print $3}' "$top/scripts/pins")
[ -n "$ver" ] || die "linux-source-6.1 is not pinned in scripts/pins"
src=$("$top/scripts/fetch-sources.sh" --path linux-source-6.1)/tree
[ -f "$src/Makefile" ] || die "no kernel tree at $src (run: make sources)"

hash=$( { cat "$frag" "$script"; echo "$KERNEL_ARCH $CROSS_COMPILE"; } |
  sha256sum | cut -c1-12)
b=$cache/build/$board/linux-$ver-$hash
img=$b/$KERNEL_IMAGE
log=$b/build.log
store=$b/images/$SOURCE_DATE_EPOCH
keep_epochs=8
mkdir -p "$b"

# Kbuild must not see the calling make's flags or jobserver.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES GNUMAKEFLAGS
export ARCH="$KERNEL_ARCH" CROSS_COMPILE SOURCE_DATE_EPOCH
KBUILD_BUILD_TIMESTAMP=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH")
export KBUILD_BUILD_TIMESTAMP
export KBUILD_BUILD_USER=postern KBUILD_BUILD_HOST=postern KBUILD_BUILD_VERSION=1
export LC_ALL=C TZ=UTC

# Two checkouts sharing the cache must not build in the same folder at once.
exec 9>"$b.lock"
flock 9

# store/image + store/ok (the image's sha256): a finished image for this epoch.
up_to_date() {
  [ -f "$store/ok" ] && [ -f "$store/image" ] || return 1
  [ "$(cat "$store/ok")" = "$(sha256sum < "$store/image" | cut -d' ' -f1)" ]
}

fail() { # fail WHAT: show the end of the log
  echo "build-kernel: $1 failed; last lines of $log:" >&2
  tail -n 40 "$log" >&2
  echo "build-kernel: full log: $log" >&2
  exit 1
}

kmake() { make -C "$src" O="$b" ARCH="$KERNEL_ARCH" \
  ${CROSS_COMPILE:+CROSS_COMPILE="$CROSS_COMPILE"} "$@"; }

configure() {
  kmake tinyconfig >>"$log" 2>&1 || fail "make tinyconfig"
  # merge_config.sh calls plain `make` from the current folder (ARCH, and
  # CROSS_COMPILE are exported above).
  (cd "$src" && scripts/kconfig/merge_config.sh -n -O "$b" "$b/.config" "$frag") \
    >>"$log" 2>&1 || fail "merge_config.sh"
  kmake olddefconfig >>"$log" 2>&1 || fail "make olddefconfig"
  touch "$b/.postern-config"
}

# Every CONFIG_X=V line of the fragment must be in .config as is, and every
# "# CONFIG_X is not set" must not be set there.
verify() {
  awk '
    FNR == NR {
      if ($0 ~ /^CONFIG_[A-Za-z0-9_]+=/) {
        n = index($0, "="); want[substr($0, 1, n - 1)] = $0
      } else if ($0 ~ /^# CONFIG_[A-Za-z0-9_]+ is not set$/) {
        want[$2] = ""
      }
      next
    }
    /^CONFIG_[A-Za-z0-9_]+=/ { n = index($0, "="); have[substr($0, 1, n - 1)] = $0 }
    END {
      for (k in want) {
        h = (k in have) ? have[k] : "# " k " is not set"
        w = (want[k] == "") ? "# " k " is not set" : want[k]
        if (want[k] == "" ? (k in have) : (h != w)) {
          printf "  %s (wanted %s)\n", h, w
        }
      }
    }' "$frag" "$b/.config" >"$b/.verify" || die "cannot check $b/.config"
  sort "$b/.verify"
}

if ! up_to_date; then
  rm -rf "$store"
  : >"$log"
  if [ ! -f "$b/.postern-config" ] || [ ! -f "$b/.config" ]; then configure; fi
  bad=$(verify) || exit 1
  if [ -n "$bad" ]; then
    echo "build-kernel: options in $frag that did not stick (missing dependency?):" >&2
    echo "$bad" >&2
    echo "build-kernel: final config: $b/.config" >&2
    exit 1
  fi
  kmake -j"$jobs" "$(basename "$KERNEL_IMAGE")" >>"$log" 2>&1 || fail "kernel build"
  [ -f "$img" ] || die "the build did not produce $img"
  mkdir -p "$store"
  cp "$img" "$store/image"
  sha256sum < "$store/image" | cut -d' ' -f1 >"$store/ok"
  # Keep the most recently used few epochs (names are digits only).
  # shellcheck disable=SC2012
  ls -1t "$b/images" | tail -n +$((keep_epochs + 1)) |
    while read -r old; do rm -rf "$b/images/$old"; done
fi

touch "$store"
mkdir -p "$(dirname "$out")"
if ! cmp -s "$store/image" "$out"; then
  cp "$store/image" "$out.tmp.$$"
  mv -f "$out.tmp.$$" "$out"
fi
