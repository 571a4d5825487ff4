# e2fsprogs 1.47.0 (Debian source), static with musl, with its own libuuid
# and libblkid: sbin/mke2fs, e2fsck, resize2fs, tune2fs, and the default
# etc/mke2fs.conf (without it small filesystems get 1 KiB blocks).
DEPS=musl
INPUTS=
OUTPUTS="sbin/mke2fs sbin/e2fsck sbin/resize2fs sbin/tune2fs etc/mke2fs.conf"

build() {
  copy_src
  ./configure --host="$CROSS_TRIPLE" --build="$(gcc -dumpmachine)" \
    --prefix=/usr --sysconfdir=/etc \
    --disable-nls --disable-elf-shlibs --disable-fuse2fs --disable-uuidd \
    --disable-debugfs --disable-imager --disable-defrag --disable-tdb \
    --disable-backtrace --disable-rpath --enable-libuuid --enable-libblkid \
    CC="$MUSL_GCC" CFLAGS="$TCFLAGS" LDFLAGS="$TLDFLAGS" BUILD_CC=gcc
  make -j"$JOBS" libs
  make -j"$JOBS" -C misc mke2fs tune2fs mke2fs.conf
  make -j"$JOBS" -C e2fsck e2fsck
  make -j"$JOBS" -C resize resize2fs
  mkdir -p "$OUT/sbin" "$OUT/etc"
  cp misc/mke2fs misc/tune2fs e2fsck/e2fsck resize/resize2fs "$OUT/sbin/"
  strip_static "$OUT/sbin/"*
  cp misc/mke2fs.conf "$OUT/etc/mke2fs.conf"
}
