# The Mozilla CA bundle from the pinned ca-certificates package: every
# usr/share/ca-certificates/mozilla/*.crt, concatenated in byte-sorted name
# order, as ca-certificates.crt (what update-ca-certificates would produce
# with all of them enabled). Data only: no compiler involved.
DEPS=
INPUTS=
OUTPUTS=ca-certificates.crt

build() {
  d=$SRC/usr/share/ca-certificates/mozilla
  ls "$d" | grep '\.crt$' | LC_ALL=C sort >list
  [ -s list ] || { echo "no certificates in $d" >&2; return 1; }
  : >bundle
  while read -r f; do
    grep -q -- '-----BEGIN CERTIFICATE-----' "$d/$f" ||
      { echo "not a PEM certificate: $f" >&2; return 1; }
    cat "$d/$f" >>bundle
    # A file without a final newline would glue two PEM blocks together.
    [ -z "$(tail -c1 "$d/$f")" ] || echo >>bundle
  done <list
  n=$(grep -c -- '-----BEGIN CERTIFICATE-----' bundle)
  [ "$n" -eq "$(wc -l <list)" ]
  echo "$n certificates"
  mv bundle "$OUT/ca-certificates.crt"
}
