"""The firmware image boots through GRUB under QEMU (TCG), formats and grows
its data partition on first boot, keeps /data across a reboot, supervises its
daemons, forwards the LAN ports, and takes a provisioning file."""
import re
import socket
import time

from box import Box


def test_bios_first_boot_data_supervision_reboot(tmp_path):
    with Box(tmp_path) as box:
        box.wait_ready()
        # First boot formatted and grew the blank data partition (1 GiB disk).
        assert "first boot: growing" in box._buf
        mounts = box.sh("cat /proc/mounts")
        m = re.search(r"^(/dev/\S+) /data ext4 (\S+)", mounts, re.M)
        assert m, mounts
        # 256-byte inodes: file times past 2038 (mail stores live long).
        assert "supports timestamps until 2038" not in box._buf
        size_kb = int(box.sh("df -k /data | awk 'NR==2{print $2}'").strip())
        assert size_kb > 700_000, f"/data not grown: {size_kb} KiB"
        # The root file system is read-only.
        assert re.search(r"^\S+ / \S+ ro[,\s]", mounts, re.M), mounts
        out = box.sh("touch /probe 2>&1; echo rc=$?", check=False)
        assert "rc=0" not in out
        # A crashed supervised daemon is restarted by runsv.
        pid1 = box.sh("cat /run/runit/supervise.syslogd/pid").strip()
        box.sh(f"kill -9 {pid1}")
        pid2 = pid1
        for _ in range(50):
            time.sleep(0.2)
            pid2 = box.sh("cat /run/runit/supervise.syslogd/pid").strip()
            if pid2 and pid2 != pid1:
                break
        assert pid2 != pid1, "syslogd was not restarted"
        assert box.sh("sv status syslogd").startswith("run:")
        assert box.sh(f"ps -o pid,comm | grep -w {pid2}").strip()
        # A file written to /data survives a reboot.
        box.sh("echo persisted-$(cat /proc/sys/kernel/random/boot_id) > /data/probe && sync")
        written = box.sh("cat /data/probe").strip()
        box.write("reboot\n")
        box.expect("Restarting system|reboot: Restarting", 60)
        box.wait_ready()
        assert box.sh("cat /data/probe").strip() == written
        tail = box._buf[box._buf.rfind("Restarting"):]
        assert "first boot" not in tail, "data partition formatted twice"


def test_lan_port_forwarding(tmp_path):
    """The SMTP submission port on loopback reaches the box's LAN address."""
    with Box(tmp_path) as box:
        box.wait_ready()
        addr = box.sh("ip -4 -o addr show br-lan")
        assert "192.168.10.1/24" in addr, addr   # the configuration default
        box.sh("(nc -l -p 587 > /tmp/got &) ; sleep 0.5")
        port = box.ports["SMTP"]
        for attempt in range(20):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"hello-through-hostfwd\n")
                break
            except OSError:
                time.sleep(0.5)
        for _ in range(20):
            if "hello-through-hostfwd" in box.sh("cat /tmp/got"):
                break
            time.sleep(0.3)
        assert "hello-through-hostfwd" in box.sh("cat /tmp/got")


def test_uefi_boot(tmp_path):
    with Box(tmp_path, firmware="uefi") as box:
        box.wait_ready()
        assert "postern.slot=a" in box.sh("cat /proc/cmdline")
        assert box.sh("ls /sys/firmware/efi >/dev/null && echo efi").strip() == "efi"


def test_provisioning_file_and_clock_floor(tmp_path):
    """A provisioning file is installed on first boot; a board whose clock
    says 2001 starts at the build time instead."""
    conf = tmp_path / "provision.conf"
    conf.write_text("# provisioned by the e2e test\nhostname provtest\n"
                    "mail-domain example.com\n")
    with Box(tmp_path, provision=conf, extra="-rtc base=2001-01-01T00:00:00") as box:
        box.wait_ready()
        assert box.sh("cat /data/etc/postern.conf") == conf.read_text()
        assert box.sh("hostname").strip() == "provtest"
        epoch = int(box.sh("cat /etc/postern-build-epoch").strip())
        now = int(box.sh("date +%s").strip())
        assert epoch <= now < epoch + 3600, (epoch, now)
        assert "clock set forward" in box._buf


def test_provisioning_file_rejected(tmp_path):
    """An invalid provisioning file is refused with the checker's message
    (naming the setting) on the console; the box still comes up."""
    conf = tmp_path / "provision.conf"
    conf.write_text("hostname provtest\nmail-domain example.com\n[smarthost]\nport 70000\n")
    with Box(tmp_path, provision=conf) as box:
        box.wait_ready()
        m = re.search(r"provisioning file rejected:\n(.*)\n", box._buf)
        assert m and "port" in m.group(1) and ":4:" in m.group(1), box._buf[-2000:]
        assert box.sh("test -e /data/etc/postern.conf; echo $?").strip() == "1"
        assert box.sh("hostname").strip() == "postern"
