# Shared build settings for the recipes in scripts/thirdparty/. Sourced by
# scripts/build-thirdparty.sh in the subshell that runs a recipe's build(),
# with: ARCH, CROSS_TRIPLE, KERNEL_HEADERS, JOBS, SRC (pristine unpacked
# Debian source, never written to), OUT (install directory, final path),
# WORK (scratch directory, the current directory, removed on success),
# VERSION, top (the checkout) and dir_<component> for every component
# built before.
# This file is part of every component's recipe hash: edits rebuild all.

# Timestamps inside the outputs: the source package's own date (its Debian
# changelog), so a component does not change with every commit.
if [ -f "$SRC/debian/changelog" ]; then
  SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -STimestamp)
fi
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"
export LC_ALL=C TZ=UTC
# Never let configure scripts find the host's (glibc) libraries.
mkdir -p "$WORK/no-pkgconfig"
export PKG_CONFIG_LIBDIR="$WORK/no-pkgconfig" PKG_CONFIG_PATH=

if [ "$ARCH" != host ]; then
  TOOL=$CROSS_TRIPLE-
  # Build paths out of debug info, __FILE__ and assertion messages.
  TCFLAGS="-Os -ffunction-sections -fdata-sections -ffile-prefix-map=$WORK=."
  TLDFLAGS="-static -Wl,--gc-sections -Wl,--build-id=none"
  # arm64 binutils align segments to 64 KiB by default; with the kernel's
  # 4 KiB pages (the arm64 default) this halves small static binaries.
  if [ "$ARCH" = aarch64 ]; then
    TLDFLAGS="$TLDFLAGS -Wl,-z,max-page-size=4096"
  fi
  if [ -n "${dir_musl:-}" ]; then
    MUSL_GCC=$dir_musl/bin/musl-gcc
  fi
fi

# copy_src: the source into $WORK/src (the shared tree stays pristine)
copy_src() {
  mkdir -p "$WORK/src"
  cp -a "$SRC/." "$WORK/src/"
  rm -f "$WORK/src/.postern-ok"
  cd "$WORK/src"
}

# strip_static FILE...: strip target binaries and insist they are static
strip_static() {
  for f in "$@"; do
    "${TOOL}strip" --strip-all -R .comment -R .note "$f"
    case $(file -b "$f") in
      *"statically linked"*|*"static-pie linked"*) ;;
      *) echo "not a static executable: $f: $(file -b "$f")" >&2; return 1 ;;
    esac
  done
}
