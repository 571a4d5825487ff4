# BearSSL 0.6 (Debian source), static library and headers only.
# Target: built with musl-gcc for size. Debian's own libbearssl.a is not
# usable: it is built for glibc with fortify (__memcpy_chk).
# Host (ARCH=host): plain gcc -O2 -fPIC, for the unit tests.
case $ARCH in
  host) DEPS= ;;
  *) DEPS=musl ;;
esac
OUTPUTS="inc/bearssl.h lib/libbearssl.a"

build() {
  copy_src
  if [ "$ARCH" = host ]; then
    cc=gcc cflags="-W -Wall -O2 -fPIC" ar=ar
  else
    cc=$MUSL_GCC cflags="-W -Wall $TCFLAGS" ar=${TOOL}ar
  fi
  cat >conf/postern.mk <<MK
include conf/Unix.mk
BUILD = build
CC = $cc
CFLAGS = $cflags
LD = $cc
AR = $ar
ARFLAGS = -rcsD
MK
  mkdir -p build/obj
  make -j"$JOBS" CONF=postern lib
  mkdir -p "$OUT/inc" "$OUT/lib"
  cp inc/*.h "$OUT/inc/"
  cp build/libbearssl.a "$OUT/lib/"
}
