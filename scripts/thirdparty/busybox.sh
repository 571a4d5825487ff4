# BusyBox 1.35.0 (Debian source, with Debian's patches), static with musl,
# configured by the committed scripts/busybox.config
# (scripts/thirdparty/busybox-config.sh regenerates it).
# Installs busybox (stripped), busybox.links (one applet path a line, for
# the rootfs symlinks) and the .config it was built with.
DEPS=musl
INPUTS=scripts/busybox.config
OUTPUTS="busybox busybox.links"

build() {
  copy_src
  cp "$top/scripts/busybox.config" .config
  # The tag replaces the build date in the banner (Debian's version.patch).
  set -- CROSS_COMPILE="$TOOL" CC="$MUSL_GCC" HOSTCC=gcc \
    BB_EXTRA_VERSION="Postern $VERSION" KCONFIG_NOTIMESTAMP=1 \
    EXTRA_CFLAGS="-ffile-prefix-map=$WORK/src/=" SKIP_STRIP=y
  make "$@" oldconfig </dev/null
  # A committed config that oldconfig has to change is stale: say so.
  grep '^CONFIG_' "$top/scripts/busybox.config" | sort >config.want
  grep '^CONFIG_' .config | sort >config.got
  if ! diff -u config.want config.got; then
    echo "scripts/busybox.config is not a complete config for this BusyBox;" \
         "run scripts/thirdparty/busybox-config.sh" >&2
    return 1
  fi
  make -j"$JOBS" "$@" busybox busybox.links
  cp busybox_unstripped "$OUT/busybox"
  strip_static "$OUT/busybox"
  cp busybox.links "$OUT/busybox.links"
  cp .config "$OUT/busybox.config"
}
