#!/bin/sh
# board/x86_64/image.sh IMG KERNEL INITRD
#
# Writes the flashable x86_64 disk image IMG: a GPT disk that boots with
# legacy BIOS and with UEFI, through GRUB built from Debian's modules. Called
# by `make image`, with VERSION, SOURCE_DATE_EPOCH and KERNEL_CMDLINE in the
# environment. No loop devices, no mounts.
#
#   LBA 0       protective MBR carrying GRUB's boot.img (BIOS stage 1)
#   1 MiB  1    "bios"          BIOS boot partition: GRUB core.img
#   2 MiB  32   "esp"           FAT POSTERN_EFI: /EFI/BOOT/BOOTX64.EFI,
#                               /grub/grub.cfg, /grub/grubenv (slot=a)
#   34 MiB 64   "postern-a"     FAT POSTERN_A: /bzImage /rootfs.gz /version
#   98 MiB 64   "postern-b"     FAT POSTERN_B: empty
#   162 MiB 16  "postern-data"  zeros; the box makes it ext4 and grows it to
#                               the end of the disk, so it must stay last
#   178 MiB 1   backup GPT
#
# Fixed GUIDs, FAT serials and timestamps (SOURCE_DATE_EPOCH): the same inputs
# give a byte-identical image. IMG is left alone when no input changed (a
# digest of them is kept in .IMG.inputs), so the QEMU overlay made from it
# by scripts/run-qemu.sh stays valid.
# shellcheck disable=SC2015,SC2086 # A && B || die; module lists split on purpose
set -eu

[ $# -eq 3 ] || { echo "usage: $0 IMG KERNEL INITRD" >&2; exit 2; }
IMG=$1 KERNEL=$2 INITRD=$3
BOARD_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/image-lib.sh
. "$BOARD_DIR/../../scripts/image-lib.sh"

: "${VERSION:?VERSION must be set (make image sets it)}"
: "${SOURCE_DATE_EPOCH:?SOURCE_DATE_EPOCH must be set (make image sets it)}"
: "${KERNEL_CMDLINE:?KERNEL_CMDLINE must be set (board.mk)}"
for f in "$KERNEL" "$INITRD"; do
	[ -f "$f" ] && [ -r "$f" ] || img_die "no such file: $f"
done
# The command line is pasted into grub.cfg: keep GRUB's script syntax out.
case $KERNEL_CMDLINE in
*[!A-Za-z0-9\ ._,=:/+-]*)
	img_die "KERNEL_CMDLINE has characters GRUB would interpret: $KERNEL_CMDLINE" ;;
esac
case $VERSION in
*[!A-Za-z0-9._+-]*) img_die "VERSION has unexpected characters: $VERSION" ;;
esac
img_need sfdisk mformat mmd mcopy grub-mkimage grub-editenv "$PY"

GRUB_PC=/usr/lib/grub/i386-pc
GRUB_EFI=/usr/lib/grub/x86_64-efi
MODS="part_gpt fat search search_label normal linux echo test loadenv serial"
MODS="$MODS terminal regexp"
MODS_PC="$MODS biosdisk"
MODS_EFI="$MODS efi_gop"

# Layout in MiB (see the top of this file); GUIDs are fixed on purpose.
DISK_MIB=179
DISK_GUID=C1F8D894-A036-425A-82ED-DBCDE01BFEC1
T_BIOS=21686148-6449-6E6F-744E-656564454649
T_ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
T_LINUX=0FC63DAF-8483-4772-8E79-3D69D8477DE4
BIOS_AT=1 BIOS_MIB=1
ESP_AT=2 ESP_MIB=32
A_AT=34 A_MIB=64
B_AT=98 B_MIB=64
DATA_AT=162 DATA_MIB=16

# ---- anything to do? -------------------------------------------------------
stamp="$(dirname "$IMG")/.$(basename "$IMG").inputs"
grub_version=$(dpkg-query -W -f '${Version} ' grub-pc-bin grub-efi-amd64-bin \
	2>/dev/null || true)
fp=$(printf 'VERSION=%s\nSOURCE_DATE_EPOCH=%s\nKERNEL_CMDLINE=%s\nGRUB=%s\n' \
	"$VERSION" "$SOURCE_DATE_EPOCH" "$KERNEL_CMDLINE" "$grub_version" |
	img_fingerprint "$KERNEL" "$INITRD" "$0" "$BOARD_DIR/grub.cfg" \
		"$BOARD_DIR/grub-early.cfg" "$BOARD_DIR/../../scripts/image-lib.sh")
if [ -f "$IMG" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fp" ]; then
	exit 0
fi

mkdir -p "$(dirname "$IMG")"
work=$(mktemp -d "${TMPDIR:-/tmp}/postern-image.XXXXXX")
tmp="$IMG.tmp"
trap 'rm -rf "$work" "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# ---- boot loader and ESP files ---------------------------------------------
sed "s|@KERNEL_CMDLINE@|$KERNEL_CMDLINE|g" "$BOARD_DIR/grub.cfg" >"$work/grub.cfg"
img_grubenv "$work/grubenv" slot=a
printf '%s\n' "$VERSION" >"$work/version"
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$BOARD_DIR/grub-early.cfg" \
	>"$work/early.cfg"
# The prefix (,gpt2)/grub makes $root start as the boot disk's partition 2;
# grub-early.cfg then finds the ESP by label (see there).
grub-mkimage -O i386-pc -d "$GRUB_PC" -c "$work/early.cfg" \
	-p '(,gpt2)/grub' -o "$work/core.img" $MODS_PC ||
	img_die "grub-mkimage failed (i386-pc)"
grub-mkimage -O x86_64-efi -d "$GRUB_EFI" -c "$work/early.cfg" \
	-p '(,gpt2)/grub' -o "$work/BOOTX64.EFI" $MODS_EFI ||
	img_die "grub-mkimage failed (x86_64-efi)"

# ---- disk ------------------------------------------------------------------
rm -f "$tmp"
truncate -s "${DISK_MIB}M" "$tmp"
{
	img_gpt_begin "$DISK_GUID" "$DISK_MIB"
	img_gpt_part $BIOS_AT $BIOS_MIB $T_BIOS \
		1BE50D20-778C-4361-962B-E83FBD2C2771 bios
	img_gpt_part $ESP_AT $ESP_MIB $T_ESP \
		B91EBFA3-1E9E-45B5-A3B8-734828A91143 esp
	img_gpt_part $A_AT $A_MIB $T_LINUX \
		EBBB6704-5932-45DC-9A16-293AC39CEDED postern-a
	img_gpt_part $B_AT $B_MIB $T_LINUX \
		8CE971B5-A268-4631-8C80-1B9F97F6FD7C postern-b
	img_gpt_part $DATA_AT $DATA_MIB $T_LINUX \
		663B1779-FFB2-4495-90C4-BF7029087AE2 postern-data
} | img_gpt "$tmp"

img_fat "$tmp" $ESP_AT $ESP_MIB POSTERN_EFI 50535445 8
img_fat_mkdir "$tmp" $ESP_AT ::/EFI ::/EFI/BOOT ::/grub
img_fat_put "$tmp" $ESP_AT "$work/BOOTX64.EFI" /EFI/BOOT/BOOTX64.EFI
img_fat_put "$tmp" $ESP_AT "$work/grub.cfg" /grub/grub.cfg
img_fat_put "$tmp" $ESP_AT "$work/grubenv" /grub/grubenv
img_fat_settime "$tmp" $ESP_AT "$SOURCE_DATE_EPOCH"

img_fat "$tmp" $A_AT $A_MIB POSTERN_A 5053540A 16
img_fat_put "$tmp" $A_AT "$KERNEL" /bzImage
img_fat_put "$tmp" $A_AT "$INITRD" /rootfs.gz
img_fat_put "$tmp" $A_AT "$work/version" /version
img_fat_settime "$tmp" $A_AT "$SOURCE_DATE_EPOCH"

img_fat "$tmp" $B_AT $B_MIB POSTERN_B 5053540B 16
img_fat_settime "$tmp" $B_AT "$SOURCE_DATE_EPOCH"

# ---- BIOS stage 1 and 1.5: what grub-bios-setup does -----------------------
# grub-pc-bin ships no grub-bios-setup (which also wants a block device and
# a /boot/grub), so the two patches are done here, as grub 2.06's
# util/setup.c does them when it embeds core.img (with --no-rs-codes):
#  boot.img  into LBA 0, keeping the MBR's BPB area (0x03-0x59) and the disk
#            signature + partition table (0x1b8-0x1fd); at 0x5c the u64 LBA
#            of core.img's first sector; 0xff at 0x64 (use the BIOS boot
#            drive); the 2-byte jump at 0x66 nop'ed (hard-disk workaround for
#            BIOSes passing a bad drive number).
#  core.img  into the BIOS boot partition. Its first sector (diskboot.img)
#            ends with the blocklist (u64 start, u16 sectors, u16 segment),
#            growing down; grub-mkimage filled in the length (sectors - 1)
#            and segment 0x820: set the start to the LBA of the 2nd sector.
"$PY" - "$tmp" "$GRUB_PC/boot.img" "$work/core.img" $((BIOS_AT * 2048)) \
	$((BIOS_MIB * 2048)) <<'EOF' || img_die "could not install GRUB's BIOS boot code"
import struct, sys

img, boot_path, core_path = sys.argv[1:4]
lba, room = int(sys.argv[4]), int(sys.argv[5])
BPB = slice(0x03, 0x5A)
KERNEL_SECTOR, BOOT_DRIVE, DRIVE_CHECK = 0x5C, 0x64, 0x66
KEEP = slice(0x1B8, 0x1FE)
LIST = 512 - 12
MAXSEC = (0x78000 - 0x9000) // 512   # what the BIOS stage can load

boot = bytearray(open(boot_path, "rb").read())
core = bytearray(open(core_path, "rb").read())
if len(boot) != 512 or boot[510:] != b"\x55\xaa":
    sys.exit("boot.img is not a 512-byte boot sector")
nsec = (len(core) + 511) // 512
if nsec > min(room, MAXSEC):
    sys.exit("core.img is %d sectors, more than the %d that fit"
             % (nsec, min(room, MAXSEC)))
core += bytes(nsec * 512 - len(core))
start, length, seg = struct.unpack_from("<QHH", core, LIST)
if length != nsec - 1 or seg != 0x820 or any(core[LIST - 12:LIST]):
    sys.exit("core.img blocklist is not what grub-mkimage 2.06 writes")
struct.pack_into("<Q", core, LIST, lba + 1)

with open(img, "r+b") as f:
    mbr = f.read(512)
    if mbr[510:] != b"\x55\xaa" or mbr[0x1C2] != 0xEE:
        sys.exit("LBA 0 is not a GPT protective MBR")
    boot[BPB] = mbr[BPB]
    boot[KEEP] = mbr[KEEP]
    struct.pack_into("<Q", boot, KERNEL_SECTOR, lba)
    boot[BOOT_DRIVE] = 0xFF
    boot[DRIVE_CHECK:DRIVE_CHECK + 2] = b"\x90\x90"
    f.seek(0)
    f.write(boot)
    f.seek(lba * 512)
    f.write(core)
EOF

sfdisk -q --verify "$tmp" >/dev/null ||
	img_die "the partition table is broken after writing the boot code"
mv -f "$tmp" "$IMG"
printf '%s\n' "$fp" >"$stamp"
