# iptables 1.8.9 (Debian source): legacy (x_tables) only, static with musl,
# every extension built in. One binary, sbin/xtables-legacy-multi; the
# names it answers to are symlinks beside it in sbin/ and listed in links.
# No nftables: libmnl/libnftnl are not available from the mirror.
DEPS=musl
INPUTS=
OUTPUTS="sbin/xtables-legacy-multi sbin/iptables sbin/iptables-restore links"

build() {
  copy_src
  # Keep make from re-running autotools (a patched file is newer).
  touch aclocal.m4; sleep 1; touch configure; touch config.h.in
  find . -name Makefile.in -exec touch {} +
  ./configure --host="$CROSS_TRIPLE" --build="$(gcc -dumpmachine)" \
    --prefix=/usr --sysconfdir=/etc \
    --disable-shared --enable-static --disable-nftables --disable-connlabel \
    --disable-libipq --disable-bpf-compiler --disable-nfsynproxy \
    --disable-devel \
    CC="$MUSL_GCC" CFLAGS="$TCFLAGS" LDFLAGS="$TLDFLAGS"
  # libtool drops a plain -static from LDFLAGS (and would link dynamically):
  # it wants -all-static. configure needs -static to run its test programs.
  make -j"$JOBS" LDFLAGS="-all-static -Wl,--gc-sections -Wl,--build-id=none"
  make install DESTDIR="$WORK/inst"
  mkdir -p "$OUT/sbin"
  cp "$WORK/inst/usr/sbin/xtables-legacy-multi" "$OUT/sbin/"
  strip_static "$OUT/sbin/xtables-legacy-multi"
  # Every name in the install that points at the multi binary.
  : >"$OUT/links"
  for l in "$WORK/inst/usr/sbin/"* "$WORK/inst/usr/bin/"*; do
    [ -L "$l" ] || continue
    [ "$(basename "$(readlink "$l")")" = xtables-legacy-multi ] || continue
    n=$(basename "$l")
    ln -s xtables-legacy-multi "$OUT/sbin/$n"
    echo "/usr/sbin/$n" >>"$OUT/links"
  done
  sort -o "$OUT/links" "$OUT/links"
  [ -s "$OUT/links" ]
}
