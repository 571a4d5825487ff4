# Helpers shared by the boards' image.sh scripts (sourced, not run).
#
# Everything works on a plain image file: no loop devices, no mounts. GPT
# comes from sfdisk, FAT file systems from mtools at a byte offset inside the
# image ("img@@offset"). Offsets and sizes are in MiB unless a name says
# otherwise; the sector size is 512.
#
# mtools 4.0.32 stamps directories and the volume label with the current time
# and ignores SOURCE_DATE_EPOCH, so after filling a FAT file system call
# img_fat_settime: it rewrites every directory entry's times to one instant.

export MTOOLSRC=/dev/null MTOOLS_SKIP_CHECK=1 TZ=UTC LC_ALL=C
PY=/usr/bin/python3

img_die() {
	echo "image: $*" >&2
	exit 1
}

# img_need TOOL...: fail clearly when a host tool is missing.
img_need() {
	for t; do
		command -v "$t" >/dev/null 2>&1 ||
			img_die "host tool '$t' is missing (make setup-build installs it)"
	done
}

# img_fingerprint FILE...: one digest over the named files and the text on
# stdin (settings that change the image, such as the kernel command line).
img_fingerprint() {
	{ cat; sha256sum -- "$@"; } | sha256sum | cut -d' ' -f1
}

# img_gpt_begin DISK_GUID SIZE_MIB: sfdisk script header for a GPT with a
# fixed disk GUID. Partitions follow with img_gpt_part; pipe it to img_gpt.
img_gpt_begin() {
	printf 'label: gpt\nlabel-id: %s\nunit: sectors\nsector-size: 512\n' "$1"
	printf 'first-lba: 2048\nlast-lba: %d\n\n' $(($2 * 2048 - 34))
}

# img_gpt_part START SIZE TYPE_GUID PART_GUID NAME
img_gpt_part() {
	printf 'start=%d, size=%d, type=%s, uuid=%s, name="%s"\n' \
		$(($1 * 2048)) $(($2 * 2048)) "$3" "$4" "$5"
}

# img_gpt IMG: write the GPT read from stdin (primary and backup) and check it.
img_gpt() {
	sfdisk -q --no-reread --no-tell-kernel --wipe always "$1" >/dev/null ||
		img_die "sfdisk could not write the partition table"
	sfdisk -q --verify "$1" >/dev/null || img_die "sfdisk --verify failed"
}

# img_fat IMG START SIZE LABEL SERIAL CLUSTER: format a FAT file system with a
# fixed volume serial (8 hex digits) and CLUSTER sectors a cluster; mtools
# picks FAT12/16/32 from the cluster count. Big clusters matter: GRUB reads a
# file one cluster at a time, and each read is a BIOS call.
img_fat() {
	mformat -i "$1@@$(($2 * 1048576))" -T $(($3 * 2048)) -h 64 -s 32 \
		-H $(($2 * 2048)) -N "$5" -v "$4" -c "$6" :: ||
		img_die "mformat failed for $4"
}

# img_fat_mkdir IMG START DIR...
img_fat_mkdir() {
	_i="$1@@$(($2 * 1048576))"
	shift 2
	mmd -i "$_i" "$@" || img_die "mmd failed for $*"
}

# img_fat_put IMG START SRC DEST: copy one host file into the FAT.
img_fat_put() {
	mcopy -i "$1@@$(($2 * 1048576))" -- "$3" "::$4" ||
		img_die "mcopy failed for $4"
}

# img_fat_settime IMG START EPOCH: set the create, access and write times of
# every directory entry (volume label, directories, files, "." and "..") to
# EPOCH, in UTC. FAT16 and FAT32.
img_fat_settime() {
	"$PY" - "$1" $(($2 * 1048576)) "$3" <<'EOF' || img_die "cannot set FAT times in $1"
import struct, sys, time

path, base, epoch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = time.gmtime(max(epoch, 315532800))          # FAT dates start in 1980
if t.tm_year > 2107:
    sys.exit("SOURCE_DATE_EPOCH past the FAT date range")
ddate = struct.pack("<H", (t.tm_year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday)
dtime = struct.pack("<H", t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2)

f = open(path, "r+b")
f.seek(base)
bs = f.read(512)
bps, spc, rsv, nfats, nroot, tot16 = struct.unpack_from("<HBHBHH", bs, 11)
fatsz16, = struct.unpack_from("<H", bs, 22)
tot32, fatsz32, rootclus = struct.unpack_from("<I I 4x I", bs, 32)
fatsz = fatsz16 or fatsz32
rootsecs = (nroot * 32 + bps - 1) // bps
data = rsv + nfats * fatsz + rootsecs
nclus = ((tot16 or tot32) - data) // spc
if bs[510:512] != b"\x55\xaa" or nclus < 4085:
    sys.exit("not a FAT16/FAT32 file system at offset %d" % base)
fat32 = nclus >= 65525
f.seek(base + rsv * bps)
fat = f.read(fatsz * bps)
DOT, DOTDOT = b".          ", b"..         "

def chain(c):
    seen = set()
    while 2 <= c < nclus + 2 and c not in seen:
        seen.add(c)
        yield base + (data + (c - 2) * spc) * bps, spc * bps
        c = (struct.unpack_from("<I", fat, c * 4)[0] & 0x0FFFFFFF if fat32
             else struct.unpack_from("<H", fat, c * 2)[0])

def fixdir(regions):
    for off, size in regions:
        f.seek(off)
        buf = bytearray(f.read(size))
        subdirs = []
        for e in range(0, size, 32):
            if buf[e] == 0:
                break
            if buf[e] == 0xE5 or buf[e + 11] == 0x0F:    # deleted, long name
                continue
            buf[e + 13] = 0
            buf[e + 14:e + 16] = dtime
            buf[e + 16:e + 20] = ddate + ddate
            buf[e + 22:e + 24] = dtime
            buf[e + 24:e + 26] = ddate
            if buf[e + 11] & 0x10 and buf[e:e + 11] not in (DOT, DOTDOT):
                lo, = struct.unpack_from("<H", buf, e + 26)
                hi, = struct.unpack_from("<H", buf, e + 20)
                subdirs.append(hi << 16 | lo)
        f.seek(off)
        f.write(buf)
        for c in subdirs:
            fixdir(list(chain(c)))

if fat32:
    fixdir(list(chain(rootclus)))
else:
    fixdir([(base + (rsv + nfats * fatsz) * bps, nroot * 32)])
f.close()
EOF
}

# img_grubenv FILE VAR=VALUE...: a 1024-byte GRUB environment block.
img_grubenv() {
	_f=$1
	shift
	{ grub-editenv "$_f" create && grub-editenv "$_f" set "$@"; } ||
		img_die "grub-editenv failed"
	[ "$(wc -c <"$_f")" -eq 1024 ] || img_die "grubenv is not 1024 bytes"
}
