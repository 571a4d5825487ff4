# musl 1.2.3 (Debian source): a static-only sysroot with the musl-gcc
# wrapper, plus the kernel's UAPI headers (linux/, asm/, asm-generic/, mtd/)
# copied from KERNEL_HEADERS so that BusyBox, iptables & co. compile against
# it. The sysroot's paths are built into musl-gcc: it is built in place.
DEPS=
OUTPUTS="bin/musl-gcc lib/libc.a include/linux/version.h include/asm/unistd.h"

build() {
  copy_src
  ./configure --target="$CROSS_TRIPLE" CROSS_COMPILE="$CROSS_TRIPLE-" \
    --prefix="$OUT" --disable-shared --enable-wrapper=gcc \
    CFLAGS="-ffile-prefix-map=$WORK=."
  make -j"$JOBS"
  make install

  # Kernel headers. Debian keeps asm/ in the multiarch folder on the
  # native arch (/usr/include/x86_64-linux-gnu/asm).
  kh=$KERNEL_HEADERS
  if [ -d "$kh/asm" ]; then asm=$kh/asm; else asm=$kh/$CROSS_TRIPLE/asm; fi
  for d in "$kh/linux" "$kh/asm-generic" "$kh/mtd" "$asm"; do
    [ -d "$d" ] || { echo "missing kernel headers: $d" >&2; return 1; }
  done
  cp -R "$kh/linux" "$kh/asm-generic" "$kh/mtd" "$asm" "$OUT/include/"

  # Proof: a static hello world that owes nothing to glibc.
  cat >hello.c <<'C'
#include <stdio.h>
#include <linux/version.h>
int main(void) { printf("hello %d\n", LINUX_VERSION_CODE > 0); return 0; }
C
  "$OUT/bin/musl-gcc" -static -Os -o hello hello.c
  "${CROSS_TRIPLE}-strip" hello
  file -b hello | tee "$OUT/hello.file"
  file -b hello | grep -q 'statically linked'
  if strings hello | grep -q 'GLIBC\|GNU C Library'; then
    echo "hello world contains glibc" >&2; return 1
  fi
  if [ "$(uname -m)" = "$ARCH" ]; then
    [ "$(./hello)" = "hello 1" ]
  fi
}
