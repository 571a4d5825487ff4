"""LAN changes from the web page apply without a reboot (docs/web.md
"Network changes"): the real admind runs the image's network script
(rootfs/usr/libexec/postern/network --check / --apply) inside a network
namespace that plays the box, joined by a veth pair to an office PC:

    lan (pc0, DHCP client)  --veth--  box eth1 192.168.10.1/24 (admind, udhcpd)

The box's services are the image's udhcpd run script (paths moved into a
private directory) under a small stand-in for runit's `sv` that really
restarts it; the firewall is the host's iptables-legacy in the box
namespace. Each check is made on the live state: `ip addr`, `iptables-save`,
udhcpd's configuration and a real DHCP lease taken by the PC. Needs root."""
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
HB = TOP / os.environ.get("HB", "build/host")
LIBEXEC = TOP / "rootfs/usr/libexec/postern"
BUSYBOX = shutil.which("busybox")

CONF = """mail-domain example.com
[wan]
interface eth0
[lan]
interface eth1
address 192.168.10.1/24
dhcp yes
dhcp-range 192.168.10.100 192.168.10.150
"""

# runit's sv for the test: logs "CMD NAME"; restart/down really stop the
# service's process (its pid file) and restart starts DIR/run again.
FAKE_SV = """#!/bin/sh
cmd=$1 dir=$2 name=${2##*/}
echo "$cmd $name" >> "$SVLOG"
# like runsv: the old process has exited (port 67 is free) before the new one starts
stop() {
	[ -f "$dir/pid" ] || return 0
	pid=$(cat "$dir/pid"); kill "$pid" 2>/dev/null
	n=0; while kill -0 "$pid" 2>/dev/null && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done
	rm -f "$dir/pid"
}
case $cmd in
restart) stop; [ -f "$dir/run" ] && { setsid sh "$dir/run" > "$dir/log" 2>&1 < /dev/null & echo $! > "$dir/pid"; } ;;
down) stop ;;
esac
exit 0
"""

# iptables-legacy, except that a rule set test fails while FAILFILE exists.
IPT_RESTORE = """#!/bin/sh
for a in "$@"; do [ "$a" = --test ] && [ -e "{fail}" ] && {{ echo "iptables-restore: line 3 failed" >&2; exit 1; }}; done
exec iptables-legacy-restore "$@"
"""


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=60, **kw)


def wait_file(path, text, timeout=30):
    """The restarted udhcpd's run script writes its configuration a moment
    after `sv restart` returned: wait for it (a readiness condition)."""
    end = time.time() + timeout
    while time.time() < end:
        if path.exists() and text in path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never got {text!r}")


class Box:
    def __init__(self, tmp):
        self.tmp = tmp
        tag = f"wn{os.getpid() % 100000}"
        self.box, self.lan = f"{tag}-box", f"{tag}-lan"
        sh("ip", "netns", "add", self.box)
        sh("ip", "netns", "add", self.lan)
        sh("ip", "link", "add", "eth1", "netns", self.box, "type", "veth", "peer", "name",
           "pc0", "netns", self.lan)
        self.ip("box", "addr add 192.168.10.1/24 dev eth1")
        sh("ip", "link", "add", "eth0", "netns", self.box, "type", "veth", "peer", "name",
           "wan0", "netns", self.lan)          # the WAN port (its far end unused)
        for where, dev in (("box", "eth1"), ("box", "eth0"), ("box", "lo"), ("lan", "pc0"), ("lan", "lo")):
            self.ip(where, f"link set {dev} up")
        self.procs = []
        self.layout()

    def ns(self, where):
        return self.box if where == "box" else self.lan

    def ip(self, where, args):
        return sh("ip", "-n", self.ns(where), *args.split())

    def run(self, where, *args, check=True):
        return sh("ip", "netns", "exec", self.ns(where), *args, check=check)

    def layout(self):
        t = self.tmp
        for d in ("etc", "run", "service", "bin", "secrets"):
            (t / d).mkdir()
        self.conf = t / "etc/postern.conf"
        self.conf.write_text(CONF)
        self.svlog = t / "sv.log"
        self.svlog.touch()
        (t / "bin/sv").write_text(FAKE_SV)
        (t / "bin/ipt-restore").write_text(IPT_RESTORE.format(fail=t / "fail-fw"))
        (t / "bin/ipt-save").write_text("#!/bin/sh\nexec iptables-legacy-save \"$@\"\n")
        (t / "bin/ip6t-restore").write_text("#!/bin/sh\nexec ip6tables-legacy-restore \"$@\"\n")
        (t / "bin/ip6t-save").write_text("#!/bin/sh\nexec ip6tables-legacy-save \"$@\"\n")
        for f in ("sv", "ipt-restore", "ipt-save", "ip6t-restore", "ip6t-save"):
            (t / "bin" / f).chmod(0o755)
        (t / "bin/udhcpd").symlink_to(BUSYBOX)
        run = (TOP / "rootfs/etc/sv/udhcpd/run").read_text().replace("/run/postern", str(t / "run"))
        for s in ("udhcpd", "dnsd", "smtpd", "imapd", "webd"):
            (t / "service" / s).mkdir()
        (t / "service/udhcpd/run").write_text(run)
        self.env = dict(os.environ, PATH=f"{t / 'bin'}:{HB / 'bin'}:{os.environ['PATH']}",
                        POSTERN_CONF=str(self.conf), POSTERN_RUN_DIR=str(t / "run"),
                        POSTERN_LIBEXEC=str(LIBEXEC), POSTERN_SERVICE_DIR=str(t / "service"),
                        POSTERN_SV=str(t / "bin/sv"), POSTERN_CONSOLE=str(t / "console"),
                        POSTERN_IPTABLES=str(t / "bin/ipt"), POSTERN_IP6TABLES=str(t / "bin/ip6t"),
                        POSTERN_FIREWALL_DIR=str(t / "run"), SVLOG=str(self.svlog),
                        POSTERN_LAN_GRACE="0")

    def boot(self):
        """What boot did: network.env, the firewall, udhcpd, then admind."""
        env = self.run("box", "env", f"PATH={self.env['PATH']}", "postern", "firewall", "env",
                       str(self.conf)).stdout
        (self.tmp / "run/network.env").write_text(env)
        sh("ip", "netns", "exec", self.box, "postern", "firewall", "apply", str(self.conf),
           env=self.env)
        sh("ip", "netns", "exec", self.box, str(self.tmp / "bin/sv"), "restart",
           str(self.tmp / "service/udhcpd"), env=self.env)
        self.sock = self.tmp / "run/admind.sock"
        r, w = os.pipe()
        p = subprocess.Popen(["ip", "netns", "exec", self.box, str(HB / "bin/admind"),
                              "--socket", str(self.sock), "--allow-uid", "65534",
                              "--conf", str(self.conf), "--users", str(self.tmp / "etc/users"),
                              "--secrets", str(self.tmp / "secrets"),
                              "--setup-code", str(self.tmp / "etc/setup-code"),
                              "--console", str(self.tmp / "console"),
                              "--sv", str(self.tmp / "bin/sv"),
                              "--service-dir", str(self.tmp / "service"),
                              "--network", str(LIBEXEC / "network"), "--ready-fd", str(w)],
                             pass_fds=(w,), env=self.env, stdout=open(self.tmp / "admind.log", "w"),
                             stderr=subprocess.STDOUT)
        os.close(w)
        assert os.read(r, 1) == b"\n", (self.tmp / "admind.log").read_text()
        os.close(r)
        self.procs.append(p)

    def admind(self, *fields):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(90)
        s.connect(str(self.sock))
        s.sendall(b"".join(f.encode() + b"\0" for f in fields))
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        s.close()
        return out.decode()

    def addrs(self):
        return self.run("box", "ip", "-4", "-o", "addr", "show", "dev", "eth1").stdout

    def rules(self):
        out = self.run("box", "iptables-legacy-save", "-t", "filter").stdout
        return "\n".join(l for l in out.split("\n") if not l.startswith("#"))

    def lease(self):
        """A DHCP lease for the PC from whatever udhcpd serves now."""
        script = self.tmp / "udhcpc.sh"
        script.write_text("#!/bin/sh\n[ \"$1\" = bound ] && echo \"BOUND $ip $router\"\nexit 0\n")
        script.chmod(0o755)
        got = self.run("lan", BUSYBOX, "udhcpc", "-i", "pc0", "-n", "-q", "-f", "-t", "20",
                       "-T", "1", "-s", str(script), check=False)
        return got.stdout + got.stderr

    def close(self):
        for p in self.procs:
            p.terminate()
            p.wait(10)
        pidf = self.tmp / "service/udhcpd/pid"
        if pidf.exists():
            sh("kill", pidf.read_text().strip(), check=False)
        sh("ip", "netns", "del", self.box, check=False)
        sh("ip", "netns", "del", self.lan, check=False)


@pytest.fixture
def box(tmp_path):
    if os.geteuid() != 0 or not BUSYBOX or not shutil.which("iptables-legacy-restore"):
        pytest.skip("needs root, busybox and iptables-legacy")
    if not (HB / "bin/admind").exists():
        pytest.skip("make host first")
    tmp_path.chmod(0o755)
    try:
        b = Box(tmp_path)
    except subprocess.CalledProcessError as e:
        tag = f"wn{os.getpid() % 100000}"
        sh("ip", "netns", "del", f"{tag}-box", check=False)
        sh("ip", "netns", "del", f"{tag}-lan", check=False)
        pytest.skip(f"network namespaces unavailable: {e.stderr}")
    try:
        b.boot()
        yield b
    finally:
        b.close()


def test_lan_change_applies_without_reboot(box):
    # before: the old network everywhere (so every check below can fail)
    assert " inet 192.168.10.1/24 " in box.addrs()
    assert "-s 192.168.10.0/24 -j ACCEPT" in box.rules()
    assert "BOUND 192.168.10.1" in box.lease()

    ans = box.admind("config", "lan.address", "192.168.20.1/24",
                     "lan.dhcp-range", "192.168.20.100 192.168.20.120")
    assert ans == "ok\nlan-address 192.168.20.1\n", ans + box.svlog.read_text()

    addrs = box.addrs()
    assert " inet 192.168.20.1/24 " in addrs and "192.168.10.1" not in addrs
    rules = box.rules()
    assert "-s 192.168.20.0/24 -j ACCEPT" in rules and "192.168.10.0/24" not in rules
    udhcpd_conf = wait_file(box.tmp / "run/udhcpd.conf", "start 192.168.20.100")
    assert "option router 192.168.20.1" in udhcpd_conf
    assert "POSTERN_LAN_ADDR='192.168.20.1'" in (box.tmp / "run/network.env").read_text()
    assert (box.tmp / "run/mail.env").read_text() == "POSTERN_LAN_ADDR=192.168.20.1\n"
    log = box.svlog.read_text().split("\n")
    for s in ("udhcpd", "dnsd", "smtpd", "imapd", "webd"):
        assert f"restart {s}" in log, log
    # the office PC gets a lease in the new network from the restarted udhcpd
    got = box.lease()
    assert re.search(r"BOUND 192\.168\.20\.1([01]\d|20) 192\.168\.20\.1$", got, re.M), got


def test_same_address_new_range_restarts_only_dhcp(box):
    ans = box.admind("config", "lan.dhcp-range", "192.168.10.200 192.168.10.210")
    assert ans == "ok\n", ans
    wait_file(box.tmp / "run/udhcpd.conf", "start 192.168.10.200")
    log = box.svlog.read_text()
    assert "hup dnsd" in log and "restart smtpd" not in log and "restart webd" not in log
    assert "BOUND 192.168.10.2" in box.lease()


def test_new_address_that_cannot_come_up_keeps_the_old(box):
    before_conf, before_rules = box.conf.read_text(), box.rules()
    ans = box.admind("config", "lan.interface", "nosuch0", "lan.address", "192.168.30.1/24",
                     "lan.dhcp-range", "192.168.30.100 192.168.30.120")
    assert ans.startswith("error\n") and "no LAN interface nosuch0" in ans, ans
    assert " inet 192.168.10.1/24 " in box.addrs()
    assert box.conf.read_text() == before_conf        # the previous file is back
    assert box.rules() == before_rules
    assert "restart" not in box.svlog.read_text().replace("restart udhcpd", "", 1)


def test_refused_rule_set_changes_nothing(box):
    before_conf, before_rules = box.conf.read_text(), box.rules()
    (box.tmp / "fail-fw").touch()
    ans = box.admind("config", "lan.address", "192.168.40.1/24",
                     "lan.dhcp-range", "192.168.40.100 192.168.40.120")
    assert ans.startswith("error\n") and "firewall rules were refused" in ans, ans
    assert box.conf.read_text() == before_conf
    assert " inet 192.168.10.1/24 " in box.addrs() and "192.168.40" not in box.addrs()
    assert box.rules() == before_rules
    # and with the tool working again the same change goes through
    (box.tmp / "fail-fw").unlink()
    assert box.admind("config", "lan.address", "192.168.40.1/24", "lan.dhcp-range",
                      "192.168.40.100 192.168.40.120") == "ok\nlan-address 192.168.40.1\n"
    assert " inet 192.168.40.1/24 " in box.addrs()


def test_static_wan_and_firewall_apply(box):
    """[wan] static and a firewall setting: the WAN port gets its address,
    default route and DNS servers, the rule set changes, without a reboot;
    the LAN is left alone (no daemon restarted)."""
    (box.tmp / "sv-wan-dhcp").mkdir()               # enabled as on the box: a link
    (box.tmp / "service/wan-dhcp").symlink_to(box.tmp / "sv-wan-dhcp")
    before = box.rules()
    assert "postern-in-lan" in before and "192.0.2.53" not in before
    ans = box.admind("config", "wan.mode", "static", "wan.address", "203.0.113.2/24",
                     "wan.gateway", "203.0.113.1", "wan.dns", "203.0.113.53",
                     "firewall.allow", "192.168.10.77 22")
    assert ans == "ok\n", ans
    wan = box.run("box", "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert " inet 203.0.113.2/24 " in wan
    assert "default via 203.0.113.1 dev eth0" in box.run("box", "ip", "route").stdout
    assert (box.tmp / "run/wan-dns").read_text() == "203.0.113.53\n"
    assert "192.168.10.77" in box.rules()
    assert not os.path.lexists(box.tmp / "service/wan-dhcp")   # no DHCP client on a static WAN
    log = box.svlog.read_text()
    assert "down wan-dhcp" in log and "restart smtpd" not in log and "hup dnsd" in log
    assert " inet 192.168.10.1/24 " in box.addrs()


def test_setup_wizard_moving_the_lan_says_where_to_go(box):
    """The first-boot wizard may set another LAN address: it applies at once
    like the network page, and admind's answer names the new address, so the
    wizard's last page sends the admin there (web/auth.c, lan_moved) instead
    of redirecting to the address that is gone."""
    (box.tmp / "etc/setup-code").write_text("WIZARD7\n")
    ans = box.admind("setup", "WIZARD7", "admin", "Admin-pw-1", "mail-domain", "example.com",
                     "lan.address", "192.168.30.1/24",
                     "lan.dhcp-range", "192.168.30.100 192.168.30.120")
    assert ans == "ok\nlan-address 192.168.30.1\n", ans + (box.tmp / "admind.log").read_text()
    addrs = box.addrs()
    assert " inet 192.168.30.1/24 " in addrs and "192.168.10.1" not in addrs
    assert "mail-domain" in box.conf.read_text() and "admin" in (box.tmp / "etc/users").read_text()
