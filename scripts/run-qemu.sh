#!/bin/sh
# scripts/run-qemu.sh IMG: boot the firmware disk image under QEMU (TCG).
#
# Called by `make run`, which exports the board's QEMU settings (QEMU,
# QEMU_MACHINE, QEMU_NIC, QEMU_DISK, QEMU_UEFI_CODE, QEMU_UEFI_VARS, BOARD);
# run by hand or by a test, it reads them from board/$BOARD/board.mk.
# The image itself is never written: the guest disk is a 1 GiB qcow2 overlay
# on top of it, so the data partition can grow and persists between runs.
#
# Environment:
#   DISK=path       overlay to use (default build/$BOARD/run/disk.qcow2, made
#                   again when IMG is newer or is not its backing file); a
#                   DISK that exists is used as it is, a missing one is made
#   FIRMWARE=bios|uefi   default bios; uefi boots OVMF from pflash with a
#                   fresh copy of the variable store (DISK minus .qcow2 plus
#                   -OVMF_VARS.fd)
#   PORT_SMTP PORT_SMTPS PORT_IMAP PORT_IMAPS PORT_HTTPS PORT_HTTP PORT_DNS
#                   loopback ports forwarded to the box's LAN address
#                   (defaults 2587 2465 2143 2993 8443 8080 5353)
#   LAN_NET=a.b.c.0/24   the LAN's user network (default 192.168.10.0/24,
#                   the configuration's default LAN); the box is .1 in it,
#                   QEMU's host side .2, and the ports above go to .1
#   LAN_NETDEV=spec the LAN NIC's -netdev instead of user networking, e.g.
#                   "tap,id=lan,fd=5" for a tap in a test's network
#                   namespace (the id must be lan); no ports are forwarded
#   WAN_NETDEV=spec the WAN NIC's -netdev instead of user networking
#                   (the id must be wan), e.g. "tap,id=wan,fd=6"
#   WAN_GUESTFWD="spec ..."   guestfwd rules on the user-network WAN (not
#                   with WAN_NETDEV): "tcp:10.0.2.100:587-cmd:/abs/path" runs
#                   the program (no arguments) for each connection the box
#                   makes to 10.0.2.100:587, with the connection on its
#                   stdin/stdout (a test bridges it to its smart host on the
#                   host's loopback); "tcp:ADDR:PORT-tcp:127.0.0.1:PORT" is
#                   QEMU's single connection made at start-up
#   PROVISION=file  handed to the box as fw_cfg opt/postern/provision
#   QEMU_EXTRA      more QEMU arguments, appended as words (no quoting)
#   NOREBOOT=1      exit QEMU when the guest reboots
#   POSTERN_KVM=1   use KVM instead of TCG (KVM does not work on our build
#                   machines; see shared notes)
#
# NICs: the first is the WAN (user networking, restrict=on, nothing
# forwarded), the second the LAN $LAN_NET, where the box is .1 and QEMU's
# host side .2 (or the test's LAN_NETDEV). The console is the serial port on stdio; when stdin is
# a terminal in the foreground, Ctrl-A X quits and Ctrl-A C is the monitor.
# The script ends by exec'ing QEMU: its PID is QEMU's PID.
#
# Word splitting of the option strings is intended (set -f: never globbed);
# dash and bash both know -nt.
# shellcheck disable=SC2015,SC2046,SC2086,SC3013
set -euf

die() {
	echo "run-qemu: $*" >&2
	exit 1
}

[ $# -eq 1 ] || { echo "usage: $0 IMG" >&2; exit 2; }
IMG=$1
[ -f "$IMG" ] && [ -r "$IMG" ] || die "no such image: $IMG"
IMG=$(readlink -f "$IMG")
: "${BOARD:=x86_64}"
: "${FIRMWARE:=bios}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# ---- board settings --------------------------------------------------------
board_settings() {
	make -s --no-print-directory -C "$ROOT" -f - BOARD="$BOARD" print <<'MK'
include board/$(BOARD)/board.mk
print:
	@printf "%s='%s'\n" QEMU '$(QEMU)' QEMU_MACHINE '$(QEMU_MACHINE)' \
		QEMU_NIC '$(QEMU_NIC)' QEMU_DISK '$(QEMU_DISK)' \
		QEMU_UEFI_CODE '$(QEMU_UEFI_CODE)' QEMU_UEFI_VARS '$(QEMU_UEFI_VARS)'
MK
}
if [ -z "${QEMU:-}" ]; then
	mk=board/$BOARD/board.mk
	[ -f "$ROOT/$mk" ] || die "BOARD=$BOARD: there is no $mk"
	settings=$(board_settings) || die "cannot read the QEMU settings of $mk"
	eval "$settings"
fi
command -v "$QEMU" >/dev/null 2>&1 || die "$QEMU is not installed (make setup)"
command -v qemu-img >/dev/null 2>&1 || die "qemu-img is not installed (make setup)"

# QEMU option values are comma-separated: a comma in a path is written ",,".
qarg() {
	printf '%s' "$1" | sed 's/,/,,/g'
}

# ---- check the settings before touching anything ---------------------------
case $FIRMWARE in
bios) ;;
uefi)
	[ -r "$QEMU_UEFI_CODE" ] && [ -r "$QEMU_UEFI_VARS" ] ||
		die "OVMF is not installed ($QEMU_UEFI_CODE, $QEMU_UEFI_VARS)"
	;;
*) die "FIRMWARE must be bios or uefi, not '$FIRMWARE'" ;;
esac

: "${LAN_NET:=192.168.10.0/24}"
case $LAN_NET in
*[!0-9./]* | *.*.*.*.* ) die "LAN_NET must be a.b.c.0/24, not '$LAN_NET'" ;;
*.*.*.0/24) ;;
*) die "LAN_NET must be a.b.c.0/24, not '$LAN_NET'" ;;
esac
LAN_PFX=${LAN_NET%.0/24}
LAN_BOX=$LAN_PFX.1
fwds=""
map=""
fwd() { # proto env-name default guest-port
	p=
	eval "p=\${$2:-$3}"
	case $p in
	'' | *[!0-9]*) die "$2 must be a port number, not '$p'" ;;
	esac
	[ "$p" -ge 1 ] && [ "$p" -le 65535 ] || die "$2=$p is out of range"
	fwds="$fwds,hostfwd=$1:127.0.0.1:$p-$LAN_BOX:$4"
	map="$map  $1 127.0.0.1:$p -> $LAN_BOX:$4 ($2)
"
}
fwd tcp PORT_SMTP 2587 587
fwd tcp PORT_SMTPS 2465 465
fwd tcp PORT_IMAP 2143 143
fwd tcp PORT_IMAPS 2993 993
fwd tcp PORT_HTTPS 8443 443
fwd tcp PORT_HTTP 8080 80
fwd tcp PORT_DNS 5353 53
fwd udp PORT_DNS 5353 53
wanfwd=""
for g in ${WAN_GUESTFWD:-}; do
	case $g in
	tcp:*.*.*.*:*-tcp:*.*.*.*:* | tcp:*.*.*.*:*-cmd:/*) ;;
	*) die "WAN_GUESTFWD: not tcp:ADDR:PORT-tcp:ADDR:PORT or tcp:ADDR:PORT-cmd:/PATH: '$g'" ;;
	esac
	case $g in
	*[!0-9A-Za-z._/:+-]*) die "WAN_GUESTFWD: unexpected characters in '$g'" ;;
	esac
	[ -z "${WAN_NETDEV:-}" ] || die "WAN_GUESTFWD needs the user-network WAN, not WAN_NETDEV"
	wanfwd="$wanfwd,guestfwd=$g"
	map="$map  WAN guestfwd $g
"
done
# romfile= drops the iPXE option ROMs: the box never boots from the network.
net="-netdev ${WAN_NETDEV:-user,id=wan,restrict=on$wanfwd}"
net="$net -device $QEMU_NIC,netdev=wan,mac=52:54:00:50:57:01,romfile="
if [ -n "${LAN_NETDEV:-}" ]; then
	net="$net -netdev $LAN_NETDEV"
	map="  LAN: -netdev $LAN_NETDEV (nothing forwarded)
"
else
	net="$net -netdev user,id=lan,restrict=on,net=$LAN_NET,host=$LAN_PFX.2"
	net="$net,dhcpstart=$LAN_PFX.200$fwds"
fi
net="$net -device $QEMU_NIC,netdev=lan,mac=52:54:00:50:4c:01,romfile="

extra=""
if [ -n "${PROVISION:-}" ]; then
	[ -f "$PROVISION" ] && [ -r "$PROVISION" ] ||
		die "no such file: PROVISION=$PROVISION"
	prov=$(qarg "$(readlink -f "$PROVISION")")
	extra="-fw_cfg name=opt/postern/provision,file=$prov"
fi
[ "${NOREBOOT:-0}" = 1 ] && extra="$extra -no-reboot"
if [ "${POSTERN_KVM:-0}" = 1 ]; then
	accel="-accel kvm -cpu host"
else
	accel="-accel tcg"
fi

# ---- disk overlay and UEFI variables ---------------------------------------
overlay() {
	qemu-img create -q -f qcow2 -b "$IMG" -F raw "$1" 1G ||
		die "qemu-img could not create $1"
}
if [ -n "${DISK:-}" ]; then
	[ -e "$DISK" ] || { mkdir -p "$(dirname "$DISK")"; overlay "$DISK"; }
else
	DISK=build/$BOARD/run/disk.qcow2
	mkdir -p "$(dirname "$DISK")"
	fresh="starting from a fresh disk (/data is lost)"
	if [ ! -e "$DISK" ]; then
		overlay "$DISK"
	elif [ "$IMG" -nt "$DISK" ]; then
		echo "run-qemu: $IMG is newer than $DISK: $fresh" >&2
		overlay "$DISK"
	elif [ "$(qemu-img info -U "$DISK" | sed -n 's/^backing file: //p')" != "$IMG" ]
	then
		echo "run-qemu: $DISK was made from another image: $fresh" >&2
		overlay "$DISK"
	fi
fi
fw=""
if [ "$FIRMWARE" = uefi ]; then
	vars=${DISK%.qcow2}-OVMF_VARS.fd
	cp "$QEMU_UEFI_VARS" "$vars" || die "cannot copy $QEMU_UEFI_VARS to $vars"
	fw="-drive if=pflash,format=raw,unit=0,readonly=on,file=$(qarg "$QEMU_UEFI_CODE")"
	fw="$fw -drive if=pflash,format=raw,unit=1,file=$(qarg "$vars")"
fi
drive=""
for w in $QEMU_DISK; do # board.mk writes the overlay's path as $DISK
	case $w in
	*\$DISK*) w=${w%%\$DISK*}$(qarg "$DISK")${w#*\$DISK} ;;
	esac
	drive="$drive $w"
done

# ---- console ---------------------------------------------------------------
# An interactive terminal gets the serial port multiplexed with the monitor
# (Ctrl-A). Otherwise (a pipe, a file, /dev/null, or a terminal while we run
# as a background job) the serial port is plain stdin/stdout without the
# monitor, and a background job reads /dev/null instead of the terminal, so
# SIGTTIN can never stop QEMU.
foreground() {
	[ -t 0 ] || return 1
	# /proc/PID/stat: field 5 is our process group, field 8 the terminal's
	# foreground group (field 2, the command name, has no spaces here).
	set -- $(cat /proc/$$/stat)
	[ "$5" = "$8" ]
}
if foreground; then
	console="-serial mon:stdio"
else
	console="-serial stdio"
	[ -t 0 ] && exec </dev/null
fi

{
	echo "run-qemu: $IMG ($FIRMWARE, disk $DISK)"
	printf '%s' "$map"
} >&2
# -nodefaults: no CD-ROM, floppy or parallel port for the firmware to probe;
# -monitor none: no second monitor besides the one on the console.
exec "$QEMU" $accel $QEMU_MACHINE -nodefaults -vga std -display none -monitor none \
	$fw $drive $net $console $extra ${QEMU_EXTRA:-}
