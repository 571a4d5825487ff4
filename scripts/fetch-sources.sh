#!/bin/sh
# Fetches the pinned Debian packages (scripts/pins) into the download cache,
# verifies every file against scripts/sha256sums, and unpacks them under
# $POSTERN_CACHE/src/<name>-<version>/. Idempotent: an unpacked tree with a
# .postern-ok stamp is reused.
#
#   scripts/fetch-sources.sh            fetch, verify and unpack everything
#   scripts/fetch-sources.sh NAME...    only these packages
#   scripts/fetch-sources.sh --path NAME   print the unpacked tree of NAME
#   scripts/fetch-sources.sh --bump     re-pin to the versions the mirror serves
#                                       now and rewrite scripts/sha256sums
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
pins=${POSTERN_PINS:-$top/scripts/pins}
sums=${POSTERN_SUMS:-$top/scripts/sha256sums}
cache=${POSTERN_CACHE:-$HOME/.cache/postern}
dl=$cache/dl
mkdir -p "$dl" "$cache/src"

die() { echo "fetch-sources: $*" >&2; exit 1; }
pin() { awk -v n="$1" '$1!="#" && $2==n {print $1, $3}' "$pins"; }
# Debian version without epoch, as used in file names.
noepoch() { echo "${1#*:}"; }
srcdir() { echo "$cache/src/$1-$(noepoch "$2")"; }

available() { # available KIND NAME -> versions the mirror has
  if [ "$1" = src ]; then
    apt-cache showsrc "$2" 2>/dev/null | awk '/^Version:/{print $2}' | sort -u | tr '\n' ' '
  else
    apt-cache madison "$2" 2>/dev/null | awk '{print $3}' | sort -u | tr '\n' ' '
  fi
}

verify() { # verify FILE... : every file must be listed and match
  for f in "$@"; do
    b=$(basename "$f")
    want=$(awk -v b="$b" '$2==b {print $1}' "$sums")
    [ -n "$want" ] || die "$b has no checksum in scripts/sha256sums (run scripts/fetch-sources.sh --bump to re-pin)"
    got=$(sha256sum "$f" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "checksum mismatch for $b: got $got, want $want"
  done
}

download() { # download KIND NAME VERSION -> prints the downloaded file names
  kind=$1 name=$2 ver=$3
  avail=$(available "$kind" "$name")
  case " $avail " in
    *" $ver "*) ;;
    *) die "$name $ver is no longer on the mirror (available: ${avail:-none}). Run scripts/fetch-sources.sh --bump to re-pin." ;;
  esac
  tmp=$(mktemp -d "$dl/.tmp.XXXXXX")
  if [ "$kind" = src ]; then
    (cd "$tmp" && apt-get -qq source --download-only "$name=$ver" >/dev/null 2>&1) ||
      { rm -rf "$tmp"; die "apt-get source $name=$ver failed (is deb-src enabled? scripts/setup-host.sh does it)"; }
  else
    (cd "$tmp" && apt-get -qq download "$name=$ver" >/dev/null 2>&1) ||
      { rm -rf "$tmp"; die "apt-get download $name=$ver failed"; }
  fi
  for f in "$tmp"/*; do mv -f "$f" "$dl/"; echo "$(basename "$f")"; done
  rmdir "$tmp"
}

files_of() { # files_of KIND NAME VERSION -> file names recorded in sha256sums
  v=$(noepoch "$3")
  if [ "$1" = src ]; then
    dsc="${2}_${v}.dsc"
    [ -f "$dl/$dsc" ] || return 0
    echo "$dsc"
    awk '/^Files:/{f=1;next} /^[^ ]/{f=0} f&&NF==3{print $3}' "$dl/$dsc"
  else
    ls "$dl" | grep -F "${2}_$(echo "$v" | sed 's/:/%3a/')_" || true
  fi
}

fetch_one() { # fetch_one NAME
  set -- "$1" $(pin "$1")
  [ $# -eq 3 ] || die "$1 is not pinned in scripts/pins"
  name=$1 kind=$2 ver=$3
  [ "$kind" = host ] && return 0
  out=$(srcdir "$name" "$ver")
  [ -f "$out/.postern-ok" ] && return 0
  have=$(files_of "$kind" "$name" "$ver")
  ok=1
  [ -n "$have" ] || ok=0
  for f in $have; do [ -f "$dl/$f" ] || ok=0; done
  if [ $ok = 0 ]; then
    echo "fetch-sources: downloading $name $ver" >&2
    download "$kind" "$name" "$ver" >/dev/null
    have=$(files_of "$kind" "$name" "$ver")
  fi
  [ -n "$have" ] || die "no files for $name $ver after download"
  for f in $have; do verify "$dl/$f"; done
  rm -rf "$out" "$out.tmp"
  if [ "$kind" = src ]; then
    # dpkg-source leaves copies of the tarballs beside its output: unpack in
    # a scratch folder so they do not litter the cache.
    x=$(mktemp -d "$cache/src/.x.XXXXXX")
    dpkg-source --no-check -x "$dl/${name}_$(noepoch "$ver").dsc" "$x/t" >/dev/null 2>&1 ||
      { rm -rf "$x"; die "dpkg-source -x failed for $name"; }
    mv "$x/t" "$out.tmp"; rm -rf "$x"
  else
    mkdir -p "$out.tmp"
    for f in $have; do dpkg-deb -x "$dl/$f" "$out.tmp"; done
    # linux-source ships the tree as a tarball inside the package.
    for t in "$out.tmp"/usr/src/linux-source-*.tar.xz; do
      [ -f "$t" ] || continue
      mkdir -p "$out.tmp/tree"
      tar -xJf "$t" -C "$out.tmp/tree" --strip-components=1
      rm -f "$t"
    done
  fi
  touch "$out.tmp/.postern-ok"
  mv "$out.tmp" "$out"
}

bump() {
  new=$(mktemp)
  : > "$sums.new"
  while read -r kind name ver; do
    case $kind in ''|'#'*) echo "$kind $name $ver" | sed 's/ *$//' >> "$new"; continue ;; esac
    if [ "$kind" = host ]; then
      cur=$(apt-cache policy "$name" | awk '/Candidate:/{print $2}')
    elif [ "$kind" = src ]; then
      cur=$(apt-cache showsrc "$name" | awk '/^Version:/{print $2}' | sort -V | tail -n1)
    else
      cur=$(apt-cache policy "$name" | awk '/Candidate:/{print $2}')
    fi
    [ -n "$cur" ] || die "mirror has no $name"
    [ "$cur" = "$ver" ] || echo "fetch-sources: $name $ver -> $cur" >&2
    echo "$kind $name $cur" >> "$new"
    [ "$kind" = host ] && continue
    for f in $(files_of "$kind" "$name" "$cur"); do [ -f "$dl/$f" ] || rm -f "$dl/${name}_"*; done
    [ -n "$(files_of "$kind" "$name" "$cur")" ] || download "$kind" "$name" "$cur" >/dev/null
    for f in $(files_of "$kind" "$name" "$cur"); do
      (cd "$dl" && sha256sum "$f") >> "$sums.new"
    done
  done < "$pins"
  mv "$new" "$pins"
  sort -k2 "$sums.new" > "$sums"; rm -f "$sums.new"
  echo "fetch-sources: pins and checksums rewritten; review with git diff" >&2
}

case ${1:-} in
  --bump) bump ;;
  --path) set -- "$2" $(pin "$2"); srcdir "$1" "$3" ;;
  "") for n in $(awk '$1=="src"||$1=="deb"{print $2}' "$pins"); do fetch_one "$n"; done ;;
  *) for n in "$@"; do fetch_one "$n"; done ;;
esac
