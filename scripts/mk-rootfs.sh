#!/bin/sh
# Assembles the root file system for one board and packs it as a
# reproducible initramfs: BUILD/rootfs.cpio.gz (replaced only when its bytes
# change, so make sees an unchanged file when nothing changed).
#
#   scripts/mk-rootfs.sh build/<board>
#
# Inputs: rootfs/ (the skeleton), BUILD/third-party/* (BusyBox, iptables,
# e2fsprogs, sfdisk, the CA bundle) and BUILD/bin/* (our programs).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
b=$1
tp=$b/third-party
st=$b/rootfs.d
out=$b/rootfs.cpio.gz
: "${SOURCE_DATE_EPOCH:?}" "${VERSION:?}"

die() { echo "mk-rootfs: $*" >&2; exit 1; }
for f in busybox/busybox busybox/busybox.links iptables/sbin/xtables-legacy-multi \
         e2fsprogs/sbin/mke2fs e2fsprogs/sbin/e2fsck e2fsprogs/sbin/resize2fs \
         util-linux/sbin/sfdisk ca-certificates/ca-certificates.crt; do
	[ -e "$tp/$f" ] || die "$tp/$f is missing (make thirdparty)"
done

rm -rf "$st"
mkdir -p "$st"
for d in bin sbin usr/bin usr/sbin usr/libexec/postern etc/ssl/certs proc sys dev run tmp data root; do
	mkdir -p "$st/$d"
done
# The skeleton: only files git knows (or would know), never editor debris.
(cd "$top/rootfs" && find . \( -type f -o -type l \) ! -name '*~' ! -name '.*' -print) |
	while read -r f; do
		mkdir -p "$st/$(dirname "$f")"
		cp -P --preserve=mode "$top/rootfs/$f" "$st/$f"
	done
chmod 0755 "$st/root"
chmod 1777 "$st/tmp"

# BusyBox and its applet links.
install -m 0755 "$tp/busybox/busybox" "$st/bin/busybox"
while read -r l; do
	l=${l#/}
	[ "$l" = bin/busybox ] && continue
	[ -e "$st/$l" ] || [ -L "$st/$l" ] && continue
	mkdir -p "$st/$(dirname "$l")"
	rel=$(echo "$(dirname "$l")" | sed 's|[^/]*|..|g')
	ln -s "$rel/bin/busybox" "$st/$l"
done < "$tp/busybox/busybox.links"
ln -sf /sbin/init "$st/init"

# Packet filter (legacy iptables, one multi-call binary).
install -m 0755 "$tp/iptables/sbin/xtables-legacy-multi" "$st/sbin/xtables-legacy-multi"
for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore \
         iptables-legacy iptables-legacy-save iptables-legacy-restore \
         ip6tables-legacy ip6tables-legacy-save ip6tables-legacy-restore; do
	ln -sf xtables-legacy-multi "$st/sbin/$n"
done

# File system and partition tools for /data.
for n in mke2fs e2fsck resize2fs; do install -m 0755 "$tp/e2fsprogs/sbin/$n" "$st/sbin/$n"; done
ln -sf mke2fs "$st/sbin/mkfs.ext4"
ln -sf e2fsck "$st/sbin/fsck.ext4"
install -m 0755 "$tp/util-linux/sbin/sfdisk" "$st/sbin/sfdisk"
printf '[defaults]\n\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr\n\tdefault_mntopts = acl,user_xattr\n\tblocksize = 4096\n\tinode_ratio = 16384\n\tinode_size = 256\n[fs_types]\n\text4 = {\n\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize\n\t}\n' > "$st/etc/mke2fs.conf"

# CA bundle for verifying the provider's servers.
install -m 0644 "$tp/ca-certificates/ca-certificates.crt" "$st/etc/ssl/certs/ca-certificates.crt"

# Our programs.
if [ -d "$b/bin" ]; then
	for p in "$b"/bin/*; do
		[ -f "$p" ] || continue
		install -m 0755 "$p" "$st/usr/bin/$(basename "$p")"
	done
fi

# The web page (Makefile web block): the CGI and its static assets.
if [ -f "$b/web/admin.cgi" ]; then
	mkdir -p "$st/usr/libexec/postern/web" "$st/usr/share/postern/www"
	install -m 0755 "$b/web/admin.cgi" "$st/usr/libexec/postern/web/admin.cgi"
	for f in "$top"/web/www/*; do
		[ -f "$f" ] && install -m 0644 "$f" "$st/usr/share/postern/www/$(basename "$f")"
	done
fi

# Runtime state lives in /run: runsv's supervise folders, /var.
for s in "$st"/etc/sv/*; do
	[ -d "$s" ] || continue
	ln -sfn "/run/runit/supervise.$(basename "$s")" "$s/supervise"
done
mkdir -p "$st/var"
ln -sfn /run "$st/var/run"
ln -sfn /run/lock "$st/var/lock"
ln -sfn /run/log "$st/var/log"
ln -sfn /tmp "$st/var/tmp"

echo "$SOURCE_DATE_EPOCH" > "$st/etc/postern-build-epoch"
printf 'NAME=Postern\nVERSION=%s\nBOARD=%s\nBUILD_EPOCH=%s\n' \
	"$VERSION" "${BOARD:-unknown}" "$SOURCE_DATE_EPOCH" > "$st/etc/postern-release"

/usr/bin/python3 "$top/scripts/mkcpio.py" "$st" "$out.new"
if [ -f "$out" ] && cmp -s "$out" "$out.new"; then
	rm -f "$out.new"
else
	mv -f "$out.new" "$out"
fi
