# util-linux 2.38.1 (Debian source): only sbin/sfdisk, static with musl
# (BusyBox's fdisk cannot edit GPT). Grows the data partition on first boot:
# echo ', +' | sfdisk -N 2 --no-reread DISK
DEPS=musl
INPUTS=
OUTPUTS=sbin/sfdisk

build() {
  copy_src
  # Debian's patches leave some inputs newer than the generated files; keep
  # make from re-running autotools.
  touch aclocal.m4; sleep 1; touch configure config.h.in
  find . -name Makefile.in -exec touch {} +
  ./configure --host="$CROSS_TRIPLE" --build="$(gcc -dumpmachine)" \
    --prefix=/usr --disable-all-programs --enable-fdisks=check \
    --enable-libfdisk --enable-libblkid --enable-libuuid --enable-libsmartcols \
    --enable-static-programs=sfdisk --disable-shared --enable-static \
    --disable-nls --disable-rpath --disable-bash-completion --disable-asciidoc \
    --without-ncurses --without-ncursesw --without-tinfo --without-readline \
    --without-udev --without-systemd --without-python --without-libz \
    --without-libmagic --without-cap-ng --without-user --without-selinux \
    --without-audit --without-econf \
    CC="$MUSL_GCC" CFLAGS="$TCFLAGS" LDFLAGS="$TLDFLAGS"
  make -j"$JOBS" sfdisk.static
  mkdir -p "$OUT/sbin"
  cp sfdisk.static "$OUT/sbin/sfdisk"
  strip_static "$OUT/sbin/sfdisk"
}
