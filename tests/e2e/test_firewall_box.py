"""Router mode end to end on the booted image (docs/firewall.md,
docs/network.md). The box's two NICs are taps in two network namespaces the
test owns:

    lan-client ns: tap lan0 (DHCP client)  ==  box eth1 192.168.10.1/24
    wan ns: tap wan0 203.0.113.1 (dnsmasq: DHCP for the box, a resolver
            answering 10.6.6.6 for everything; listeners on the mail ports)
                                            ==  box eth0 (DHCP)

Proves once on the real kernel, iptables and boot scripts: udhcpd hands the
LAN client an address with the box as router and DNS (and the lease's name
reaches dnsd); the WAN DHCP client writes the provider's DNS for dnsd; the
LAN client cannot reach the mail ports outside and gets a reset; the box
can; foreign DNS is answered by the box; NAT works; the WAN reaches none of
the box's services; blocked attempts are counted and logged; `postern
firewall apply` after a change switches to reject mode. Needs root."""
import ctypes
import fcntl
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import time

import pytest

from box import Box

PEERS = pathlib.Path(__file__).resolve().parents[1] / "integration" / "peers" / "net"
PY = "/usr/bin/python3"
MAIL_PORTS = [25, 465, 587, 110, 995, 143, 993]
BLOCKED = MAIL_PORTS + [2525, 853]      # the default list, and DNS over TLS
WAN = "203.0.113.1"
BOX_LAN = "192.168.10.1"
CONF = """# provisioned by tests/e2e/test_firewall_box.py
hostname        gate
mail-domain     example.com
internal-domain office.lan

[wan]
interface eth0

[lan]
interface eth1
address 192.168.10.1/24
dhcp-range 192.168.10.100 192.168.10.110
dhcp-lease 1h

[dns]
host probe 10.9.9.9
"""
DHCP_SCRIPT = """#!/bin/sh
# udhcpc script of the LAN client: configure, and record what the box offered.
case $1 in
bound|renew)
	ip addr add "$ip/$mask" dev "$interface"
	ip route replace default via "${router%% *}"
	echo "ip=$ip mask=$mask router=$router dns=$dns domain=$domain" > "$LEASE_OUT" ;;
esac
exit 0
"""
CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def sh(*args, check=True, timeout=60):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def tap_in_ns(ns, name):
    """Opens a new tap device `name` inside namespace ns; returns its fd
    (QEMU's -netdev tap,fd=N)."""
    libc = ctypes.CDLL(None, use_errno=True)
    here = os.open("/proc/self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
        return fd
    finally:
        libc.setns(here, CLONE_NEWNET)
        os.close(here)
        os.close(there)


class Sides:
    def __init__(self, tmp):
        self.tmp = tmp
        tag = f"pe{os.getpid()}"
        self.ns = {"lan": f"{tag}-lan", "wan": f"{tag}-wan"}
        self.procs = []
        for n in self.ns.values():
            sh("ip", "netns", "add", n)
        self.lan_fd = tap_in_ns(self.ns["lan"], "lan0")
        self.wan_fd = tap_in_ns(self.ns["wan"], "wan0")
        self.run("lan", "ip", "link", "set", "lo", "up")
        self.run("lan", "ip", "link", "set", "lan0", "up")
        for c in ("link set lo up", f"addr add {WAN}/24 dev wan0", "link set wan0 up"):
            self.run("wan", "ip", *c.split())
        p = self.spawn("wan", PY, str(PEERS / "listen.py"), "wan", *map(str, BLOCKED + [80]),
                       stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        # The provider: DHCP for the box's WAN port, and a resolver.
        self.spawn("wan", "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                   "--bind-interfaces", "--interface=wan0", f"--listen-address={WAN}",
                   "--address=/#/10.6.6.6", "--dhcp-range=203.0.113.10,203.0.113.20,255.255.255.0,1h",
                   f"--dhcp-option=3,{WAN}", f"--dhcp-option=6,{WAN}",
                   f"--dhcp-leasefile={tmp}/wan.leases", "--pid-file=", "--user=root",
                   f"--log-facility={tmp}/dnsmasq.log")

    def run(self, where, *args, check=True, timeout=60):
        return sh("ip", "netns", "exec", self.ns[where], *args, check=check, timeout=timeout)

    def spawn(self, where, *args, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[where], *args], **kw)
        self.procs.append(p)
        return p

    def probe(self, where, host, ports, timeout=2.0):
        out = self.run(where, PY, str(PEERS / "probe.py"), host, str(timeout), *map(str, ports))
        return {int(k): v for k, v in json.loads(out.stdout).items()}

    def dig(self, where, server, name, tcp=False):
        args = ["dig", f"@{server}", name, "+short", "+time=3", "+tries=1"] + (["+tcp"] if tcp else [])
        out = self.run(where, *args, check=False)
        return out.stdout.strip() if out.returncode == 0 else None

    def close(self):
        for p in self.procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for fd in (getattr(self, "lan_fd", None), getattr(self, "wan_fd", None)):
            if fd is not None:
                os.close(fd)
        for n in self.ns.values():
            sh("ip", "netns", "del", n, check=False)


@pytest.fixture
def sides(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, taps)")
    for tool in ("ip", "dnsmasq", "dig", "busybox"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    s = Sides(tmp_path)
    try:
        yield s
    finally:
        s.close()


def lease(sides, tmp):
    """A DHCP lease for the LAN client (busybox udhcpc, hostname desk1)."""
    script = tmp / "udhcpc.sh"
    script.write_text(DHCP_SCRIPT)
    script.chmod(0o755)
    out = tmp / "lease"
    env_cmd = ["env", f"LEASE_OUT={out}", "busybox", "udhcpc", "-i", "lan0", "-f", "-q", "-n",
               "-t", "20", "-T", "3", "-s", str(script), "-x", "hostname:desk1"]
    r = sides.run("lan", *env_cmd, check=False, timeout=120)
    assert out.exists(), f"no lease: {r.stdout}{r.stderr}"
    return dict(kv.split("=", 1) for kv in out.read_text().split())


def test_router_mode_end_to_end(sides, tmp_path):
    prov = tmp_path / "postern.conf"
    prov.write_text(CONF)
    with Box(tmp_path, provision=prov, pass_fds=(sides.lan_fd, sides.wan_fd),
             lan_netdev=f"tap,id=lan,fd={sides.lan_fd}",
             wan_netdev=f"tap,id=wan,fd={sides.wan_fd}") as box:
        box.wait_ready()
        # The WAN by DHCP from the provider; its DNS servers for dnsd.
        # "ready" does not wait for the WAN (it may be down): the lease can
        # still be on its way.
        deadline = time.monotonic() + 60
        while not (m := re.search(r"inet (203\.0\.113\.\d+)/24",
                                  box.sh("ip -4 -o addr show eth0"))):
            assert time.monotonic() < deadline, box.sh("ip addr; ps")
            time.sleep(1)
        wan_addr = m.group(1)
        deadline = time.monotonic() + 10
        while box.sh("cat /run/postern/wan-dns 2>/dev/null", check=False).split() != [WAN]:
            assert time.monotonic() < deadline, box.sh("ls -l /run/postern")
            time.sleep(0.5)
        assert "postern-forward" in box.sh("iptables-save")
        # IPv6: the same policy through ip6tables (docs/firewall.md)
        v6 = box.sh("ip6tables-save")
        assert ":INPUT DROP" in v6 and ":FORWARD DROP" in v6 and "postern-forward" in v6, v6
        assert box.sh("cat /proc/sys/net/ipv4/ip_forward").strip() == "1"

        # The LAN client's lease: the box is its router and DNS server.
        got = lease(sides, tmp_path)
        ip = got["ip"]
        assert re.fullmatch(r"192\.168\.10\.1(0\d|10)", ip), got
        assert got["router"] == BOX_LAN and got["dns"] == BOX_LAN, got
        assert got["domain"] == "office.lan", got
        # udhcpd may hand out the whole range (BusyBox's max_leases: 235
        # unless set; the run script sets the range's size).
        assert "max_leases 11" in box.sh("cat /run/postern/udhcpd.conf").splitlines()
        # ... and its name reaches the resolver within 5 seconds.
        deadline = time.monotonic() + 5
        while sides.dig("lan", BOX_LAN, "desk1.office.lan") != ip:
            assert time.monotonic() < deadline, box.sh("cat /run/postern/udhcpd.leases | od -c | head")
            time.sleep(0.2)
        rev = sides.run("lan", "dig", f"@{BOX_LAN}", "-x", ip, "+short", "+time=3", "+tries=1")
        assert rev.stdout.strip() == "desk1.office.lan.", rev.stdout

        # Mail ports outside: a reset for the LAN client; the box itself gets through.
        lan = sides.probe("lan", WAN, BLOCKED)
        assert lan == {p: "reset" for p in BLOCKED}, lan
        assert f"wan 25 from {wan_addr}" in box.sh(f"nc {WAN} 25 </dev/null", timeout=30)
        # NAT for allowed traffic; foreign DNS answered by the box.
        assert sides.probe("lan", WAN, [80]) == {80: f"open wan 80 from {wan_addr}"}
        assert sides.dig("lan", WAN, "probe.office.lan") == "10.9.9.9"
        assert sides.dig("lan", WAN, "probe.office.lan", tcp=True) == "10.9.9.9"
        # The box's own service answers on the LAN.
        assert sides.probe("lan", BOX_LAN, [587])[587].startswith("open 220 ")
        # The WAN reaches none of the box's services.
        wan = sides.probe("wan", wan_addr, [53, 587, 465, 143, 993, 443, 80], timeout=1.5)
        assert set(wan.values()) == {"timeout"}, wan
        assert sides.dig("wan", wan_addr, "probe.office.lan") is None
        # ... but ICMP, rate-limited: of a burst of 200 echo requests the
        # burst allowance (20) comes back, not all of them.
        flood = sides.run("wan", PY, str(PEERS / "icmpflood.py"), wan_addr, "200")
        assert 1 <= int(flood.stdout) <= 100, flood.stdout
        # Blocked attempts: counted per LAN host, logged with a rate limit.
        counts = box.sh("postern firewall blocked")
        m = re.search(rf"^{re.escape(ip)}\s+(\d+)$", counts, re.M)
        assert m and int(m.group(1)) >= len(BLOCKED), counts
        assert "postern-fw blocked: " in box.sh("dmesg | grep postern-fw | tail -n 3")

        # A change, applied: foreign DNS is now refused.
        box.sh("postern config set firewall.foreign-dns reject")
        assert "applied" in box.sh("postern firewall apply")
        assert sides.dig("lan", WAN, "probe.office.lan") is None
        assert sides.dig("lan", BOX_LAN, "probe.office.lan") == "10.9.9.9"


STATIC = """# provisioned by tests/e2e/test_firewall_box.py (static WAN)
hostname        gate
mail-domain     example.com

[wan]
interface eth0
mode static
address 203.0.113.5/24
gateway 203.0.113.1
dns 203.0.113.1

[lan]
interface eth1
address 192.168.10.1/24
"""


def test_static_wan_then_single_interface(sides, tmp_path):
    """The other two network modes from the configuration: a static WAN;
    then, after a change and a reboot, single-interface mode."""
    prov = tmp_path / "postern.conf"
    prov.write_text(STATIC)
    client = "192.168.10.60"
    sides.run("lan", "ip", "addr", "add", f"{client}/24", "dev", "lan0")
    sides.run("lan", "ip", "route", "add", "default", "via", BOX_LAN)
    with Box(tmp_path, provision=prov, pass_fds=(sides.lan_fd, sides.wan_fd),
             lan_netdev=f"tap,id=lan,fd={sides.lan_fd}",
             wan_netdev=f"tap,id=wan,fd={sides.wan_fd}") as box:
        box.wait_ready()
        assert "inet 203.0.113.5/24" in box.sh("ip -4 -o addr show eth0")
        assert "default via 203.0.113.1" in box.sh("ip route")
        assert box.sh("cat /run/postern/wan-dns").split() == [WAN]
        assert "wan-dhcp" not in box.sh("ls /run/service").split()
        assert sides.probe("lan", WAN, [80, 587]) == {80: "open wan 80 from 203.0.113.5",
                                                       587: "reset"}

        box.sh("postern config set lan.gateway 192.168.10.254")
        box.sh("postern config set firewall.single-interface yes")
        box.write("reboot\n")
        box.expect("Restarting system|reboot: Restarting", 60)
        box.wait_ready()
        assert box.sh("cat /proc/sys/net/ipv4/ip_forward").strip() == "0"
        assert "default via 192.168.10.254" in box.sh("ip route")
        assert box.sh("cat /run/postern/wan-dns").split() == ["192.168.10.254"]
        services = box.sh("ls /run/service").split()
        assert "udhcpd" not in services and "wan-dhcp" not in services, services
        # The box serves the LAN, and protects itself; it routes nothing.
        svc = sides.probe("lan", BOX_LAN, [587, 2222])
        assert svc[587].startswith("open 220 ") and svc[2222] == "reset", svc
        assert sides.probe("lan", WAN, [80], timeout=1.5) == {80: "timeout"}
        out = box.sh("postern firewall show")
        assert "for the office router" in out
        assert "-A postern-forward -s 192.168.10.1 -j ACCEPT" in out


FAKE_NOMASQ = [   # the box's iptables-restore, refusing every rule set with MASQUERADE
    "#!/bin/sh",
    "input=$(cat)",
    'case "$input" in *MASQUERADE*) echo "nomasq-restore: simulated: no MASQUERADE" >&2; exit 1 ;; esac',
    'printf "%s\\n" "$input" | exec iptables-restore "$@"',
]


def test_boot_hook_fails_closed_on_the_image(sides, tmp_path):
    """docs/firewall.md "Fallback", on the real kernel, BusyBox shell and
    iptables: the boot hook, run as at boot (nothing in force) while the
    generated rule set is refused, loads the fallback: the LAN client reaches
    the admin page and DNS only, the WAN nothing, nothing is forwarded; the
    console says FALLBACK and the dashboard's alerts show it. A normal boot
    records the rules as ok; a real boot whose rule set cannot be generated
    comes up in the fallback."""
    prov = tmp_path / "postern.conf"
    prov.write_text(CONF)
    client = "192.168.10.60"
    sides.run("lan", "ip", "addr", "add", f"{client}/24", "dev", "lan0")
    sides.run("lan", "ip", "route", "add", "default", "via", BOX_LAN)
    with Box(tmp_path, provision=prov, pass_fds=(sides.lan_fd, sides.wan_fd),
             lan_netdev=f"tap,id=lan,fd={sides.lan_fd}",
             wan_netdev=f"tap,id=wan,fd={sides.wan_fd}") as box:
        box.wait_ready()
        assert "result=ok" in box.sh("cat /run/postern/status/firewall-rules")
        assert "FALLBACK" not in box._buf          # the boot's console
        assert sides.probe("lan", BOX_LAN, [587])[587].startswith("open 220 ")

        box.sh("mkdir -p /tmp/fw && printf '%s\\n' " +
               " ".join(f"'{l}'" for l in FAKE_NOMASQ) + " > /tmp/fw/nomasq-restore")
        box.sh("printf '#!/bin/sh\\nexec iptables-save \"$@\"\\n' > /tmp/fw/nomasq-save")
        box.sh("printf '#!/bin/sh\\nexec iptables \"$@\"\\n' > /tmp/fw/nomasq && chmod 755 /tmp/fw/*")
        # As at boot: nothing in force.
        for t in ("iptables", "ip6tables"):
            box.sh(f"{t} -P INPUT ACCEPT; {t} -P FORWARD ACCEPT; {t} -F; {t} -X")
        box.sh("iptables -t nat -F; iptables -t nat -X")
        out = box.sh("POSTERN_IPTABLES=nomasq PATH=/tmp/fw:$PATH /usr/libexec/postern/firewall; "
                     "echo hook=$?", timeout=120)
        assert "hook=0" in out and "FALLBACK" in out and "only the admin page" in out, out
        v4, v6 = box.sh("iptables-save"), box.sh("ip6tables-save")
        assert "-A INPUT -i eth1 -j postern-fallback" in v4, v4
        assert "-A INPUT -i eth1 -j postern-fallback" in v6, v6
        assert "result=failed" in box.sh("cat /run/postern/status/firewall-rules")
        assert "in fallback" in box.sh("postern alerts show")

        # The LAN client: the admin page and DNS, nothing else; no forwarding.
        code = sides.run("lan", "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                         "--max-time", "20", f"https://{BOX_LAN}/", check=False).stdout
        assert code not in ("", "000"), code
        assert sides.dig("lan", BOX_LAN, "probe.office.lan") == "10.9.9.9"
        assert sides.probe("lan", BOX_LAN, [587, 993], timeout=1.5) == {587: "timeout", 993: "timeout"}
        assert sides.probe("lan", WAN, [80, 25], timeout=1.5) == {80: "timeout", 25: "timeout"}
        # The WAN: nothing.
        m = re.search(r"inet (203\.0\.113\.\d+)/24", box.sh("ip -4 -o addr show eth0"))
        if m:
            wan = sides.probe("wan", m.group(1), [53, 587, 443, 80], timeout=1.5)
            assert set(wan.values()) == {"timeout"}, wan

        # Repaired: a normal apply replaces the fallback and clears the alert.
        assert "applied" in box.sh("postern firewall apply")
        assert "firewall" not in box.sh("postern alerts show", check=False)
        assert sides.probe("lan", BOX_LAN, [587])[587].startswith("open 220 ")

        # The real boot with a configuration that yields no rule set (WAN
        # and LAN on one port): the fallback without names, said on the
        # console during the boot; the admin page stays shut too (naming
        # that port would open it to the WAN).
        box.sh("postern config set wan.interface eth1")
        box.write("reboot\n")
        box.expect("Restarting system|reboot: Restarting", 60)
        box.expect(r"firewall: postern firewall: FALLBACK: [^\n]*without interface names", 300)
        # No "ready": with WAN and LAN on one port the network never settles
        # (udhcpd keeps restarting); the console is enough.
        box.expect("Please press Enter to activate this console", 120)
        box.write("\n")
        box.expect(r"[#$] ", 30)
        box.sh("dmesg -n 1")
        v4, v6 = box.sh("iptables-save"), box.sh("ip6tables-save")
        assert ":postern-fallback" in v4 and "-j postern-fallback" not in v4, v4
        assert ":INPUT DROP" in v6 and ":FORWARD DROP" in v6, v6
        assert "result=failed" in box.sh("cat /run/postern/status/firewall-rules")
        code = sides.run("lan", "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                         "--max-time", "5", f"https://{BOX_LAN}/", check=False).stdout
        assert code in ("", "000"), code
        assert sides.probe("lan", BOX_LAN, [587], timeout=1.5) == {587: "timeout"}
