"""The generated rule set, loaded by `postern firewall apply` with the host's
iptables-legacy into a network namespace that plays the box, between a LAN
host and a WAN side (docs/firewall.md):

    lan-host 192.168.10.50  --veth--  box eth1 192.168.10.1
                                      box eth0 203.0.113.2  --veth--  wan 203.0.113.1
    (IPv6: fd00:10::/64 on the LAN, 2001:db8:1::/64 on the WAN)

The WAN side runs listeners on the mail ports and dnsmasq as "a resolver on
the Internet"; the box runs listeners on its service ports and the real
dnsd. Every check is made first without rules (the test can fail), then
with them. Needs root (namespaces, iptables); skipped otherwise."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time

import pytest

PEERS = pathlib.Path(__file__).resolve().parent / "peers" / "net"
PY = "/usr/bin/python3"
MAIL_PORTS = [25, 465, 587, 110, 995, 143, 993]
WAN_PORTS = MAIL_PORTS + [2525, 853, 80]
BOX_PORTS = [25, 465, 587, 143, 993, 443, 80, 2222]
LAN, BOX_LAN, BOX_WAN, WAN = "192.168.10.50", "192.168.10.1", "203.0.113.2", "203.0.113.1"
LAN6, BOX_LAN6, BOX_WAN6, WAN6 = "fd00:10::50", "fd00:10::1", "2001:db8:1::2", "2001:db8:1::1"

CONF = """mail-domain example.com
[wan]
interface eth0
[lan]
interface eth1
address 192.168.10.1/24
address6 fd00:10::1/64
[dns]
host probe 10.9.9.9
"""


def need(cond, why):
    if not cond:
        pytest.skip(why)


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=60, **kw)


class Net:
    """Three namespaces, their processes, and helpers to run in them."""
    def __init__(self, tmp, postern, dnsd):
        self.tmp = tmp
        self.postern = postern
        tag = f"pn{os.getpid()}"
        self.ns = {"lan": f"{tag}-lan", "box": f"{tag}-box", "wan": f"{tag}-wan"}
        self.procs = []
        self.env = dict(os.environ, POSTERN_IPTABLES="iptables-legacy",
                        POSTERN_IP6TABLES="ip6tables-legacy",
                        POSTERN_FIREWALL_DIR=str(tmp))
        for n in self.ns.values():
            sh("ip", "netns", "add", n)
        self.links()
        self.start_peers(dnsd)

    def run(self, where, *args, check=True, env=None):
        return sh("ip", "netns", "exec", self.ns[where], *args, check=check, env=env)

    def links(self):
        b, l, w = self.ns["box"], self.ns["lan"], self.ns["wan"]
        sh("ip", "link", "add", "eth1", "netns", b, "type", "veth", "peer", "name", "lan0", "netns", l)
        sh("ip", "link", "add", "eth0", "netns", b, "type", "veth", "peer", "name", "wan0", "netns", w)
        setup = {
            "box": [f"addr add {BOX_LAN}/24 dev eth1", f"addr add {BOX_WAN}/24 dev eth0",
                    f"-6 addr add {BOX_LAN6}/64 dev eth1 nodad",
                    f"-6 addr add {BOX_WAN6}/64 dev eth0 nodad",
                    "link set lo up", "link set eth0 up", "link set eth1 up",
                    f"route add default via {WAN}", f"-6 route add default via {WAN6}"],
            "lan": [f"addr add {LAN}/24 dev lan0", f"-6 addr add {LAN6}/64 dev lan0 nodad",
                    "link set lo up", "link set lan0 up",
                    f"route add default via {BOX_LAN}", f"-6 route add default via {BOX_LAN6}"],
            "wan": [f"addr add {WAN}/24 dev wan0", f"-6 addr add {WAN6}/64 dev wan0 nodad",
                    "link set lo up", "link set wan0 up",
                    f"route add 192.168.10.0/24 via {BOX_WAN}",
                    f"-6 route add fd00:10::/64 via {BOX_WAN6}"],
        }
        for where, cmds in setup.items():
            for c in cmds:
                self.run(where, "ip", *c.split())
        self.run("box", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.run("box", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")

    def spawn(self, where, *args, ready=None, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[where], *args], **kw)
        self.procs.append(p)
        return p

    def listeners(self, where, name, ports):
        p = self.spawn(where, PY, str(PEERS / "listen.py"), name, *map(str, ports),
                       stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"

    def start_peers(self, dnsd):
        self.listeners("wan", "wan", WAN_PORTS)
        self.listeners("box", "box", BOX_PORTS)
        # "A resolver on the Internet": answers every name with 10.6.6.6.
        self.spawn("wan", "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                   "--bind-interfaces", f"--listen-address={WAN}", "--port=53",
                   "--address=/#/10.6.6.6", "--pid-file=", "--user=nobody", "--group=nogroup",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The box's resolver: the real dnsd, knowing probe.office.lan.
        run = pathlib.Path(tempfile.mkdtemp(prefix="fw-dnsd-"))
        run.chmod(0o755)
        (run / "postern.conf").write_text(CONF)
        (run / "postern.conf").chmod(0o644)
        r, w = os.pipe()
        self.spawn("box", dnsd, "-f", "-c", str(run / "postern.conf"),
                   "--listen", f"{BOX_LAN}:53", "--ready-fd", str(w),
                   "--wan-dns", str(run / "wan-dns"), "--leases", str(run / "leases"),
                   "--user", "nobody", pass_fds=(w,),
                   stdout=open(self.tmp / "dnsd.log", "w"), stderr=subprocess.STDOUT)
        os.close(w)
        assert os.read(r, 1) == b"\n", (self.tmp / "dnsd.log").read_text()
        os.close(r)
        self.dnsd_run = run
        self.wait_dns(WAN)

    def wait_dns(self, server, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if self.dig("wan", server, "ready.example").ok:
                return
            time.sleep(0.1)
        raise AssertionError(f"no resolver answers on {server}")

    def dig(self, where, server, name, tcp=False):
        args = ["dig", f"@{server}", name, "+short", "+time=2", "+tries=1"]
        if tcp:
            args.append("+tcp")
        out = self.run(where, *args, check=False)
        out.ok = out.returncode == 0 and bool(out.stdout.strip())
        out.addr = out.stdout.strip()
        return out

    def probe(self, where, host, ports, timeout=1.5):
        out = self.run(where, PY, str(PEERS / "probe.py"), host, str(timeout), *map(str, ports))
        return {int(k): v for k, v in json.loads(out.stdout).items()}

    def apply(self, conf_text, env=None, name="postern.conf"):
        conf = self.tmp / name
        conf.write_text(conf_text)
        return self.run("box", self.postern, "firewall", "apply", str(conf), check=False,
                        env=env or self.env)

    def rules(self, family=4):
        """The box's tables now, without counters and timestamps."""
        tool = "iptables-legacy-save" if family == 4 else "ip6tables-legacy-save"
        text = self.run("box", tool).stdout
        return [re.sub(r"\[\d+:\d+\]", "", l) for l in text.splitlines() if not l.startswith("#")]

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for n in self.ns.values():
            sh("ip", "netns", "del", n, check=False)
        shutil.rmtree(getattr(self, "dnsd_run", "/nonexistent"), ignore_errors=True)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    need(os.geteuid() == 0, "needs root (network namespaces, iptables)")
    for tool in ("ip", "iptables-legacy-restore", "ip6tables-legacy-restore", "dnsmasq", "dig"):
        need(shutil.which(tool), f"{tool} is not installed")
    hb = pathlib.Path(__file__).resolve().parents[2] / os.environ.get("HB", "build/host")
    postern, dnsd = hb / "bin" / "postern", hb / "bin" / "dnsd"
    assert postern.exists() and dnsd.exists(), "run `make host`"
    n = Net(tmp_path_factory.mktemp("fw"), str(postern), str(dnsd))
    try:
        yield n
    finally:
        n.close()


def flush(net):
    for tool in ("iptables-legacy", "ip6tables-legacy"):
        for table in (["filter", "nat"] if tool == "iptables-legacy" else ["filter"]):
            for op in ("-F", "-X"):
                net.run("box", tool, "-t", table, op)
            for chain in ("INPUT", "FORWARD", "OUTPUT"):
                if table == "filter":
                    net.run("box", tool, "-P", chain, "ACCEPT")


def test_without_rules_everything_passes(net):
    """The control: with no rules the LAN reaches the WAN's mail ports and
    resolver, and the WAN reaches the box's services, so the checks below
    can fail."""
    flush(net)
    lan = net.probe("lan", WAN, MAIL_PORTS)
    assert all(v.startswith("open wan") for v in lan.values()), lan
    assert net.dig("lan", WAN, "probe.office.lan").addr == "10.6.6.6"
    wan = net.probe("wan", BOX_WAN, [587, 993])
    assert all(v.startswith("open box") for v in wan.values()), wan
    assert icmp_replies(net, BOX_WAN, 200) >= 190      # no rate limit without rules


def test_router_policy_redirect_mode(net):
    r = net.apply(CONF)
    assert r.returncode == 0, r.stderr
    assert "applied (router mode)" in r.stdout
    assert (net.tmp / "firewall.rules").read_text().startswith("# generated by postern")
    # The LAN host cannot open the mail ports on the WAN side: a reset
    # (probe.py tells a reset from a timeout), so clients fail fast.
    lan = net.probe("lan", WAN, MAIL_PORTS + [2525, 853])
    assert lan == {p: "reset" for p in MAIL_PORTS + [2525, 853]}, lan
    # The box itself can.
    box = net.probe("box", WAN, MAIL_PORTS)
    assert all(v == f"open wan {p} from {BOX_WAN}" for p, v in box.items()), box
    # NAT for allowed traffic: the WAN sees the box's address.
    assert net.probe("lan", WAN, [80]) == {80: f"open wan 80 from {BOX_WAN}"}
    # Foreign DNS is answered by the box's resolver (UDP and TCP).
    assert net.dig("lan", WAN, "probe.office.lan").addr == "10.9.9.9"
    assert net.dig("lan", WAN, "probe.office.lan", tcp=True).addr == "10.9.9.9"
    assert net.dig("lan", BOX_LAN, "probe.office.lan").addr == "10.9.9.9"
    # The LAN reaches the box's services, not its other ports.
    svc = net.probe("lan", BOX_LAN, [587, 993, 443, 2222])
    assert svc == {587: f"open box 587 from {LAN}", 993: f"open box 993 from {LAN}",
                   443: f"open box 443 from {LAN}", 2222: "reset"}, svc
    assert net.probe("lan", BOX_LAN, [25]) == {25: "reset"}   # port25 is off
    # The WAN reaches none of the box's services, on either address.
    for host in (BOX_WAN, BOX_LAN):
        wan = net.probe("wan", host, BOX_PORTS, timeout=1)
        assert wan == {p: "timeout" for p in BOX_PORTS}, (host, wan)
    assert not net.dig("wan", BOX_LAN, "probe.office.lan").ok
    # Nothing from the WAN reaches the LAN host (no port forwarding).
    assert net.probe("wan", LAN, [22], timeout=1) == {22: "timeout"}
    # Blocked attempts are counted per LAN host.
    out = net.run("box", net.postern, "firewall", "blocked", env=net.env).stdout
    m = re.search(rf"^{re.escape(LAN)}\s+(\d+)$", out, re.M)
    assert m and int(m.group(1)) >= len(MAIL_PORTS) + 2, out
    # ... and logged with a rate limit (the LOG rule itself: the kernel
    # logs nothing from a network namespace; the booted image's log is
    # checked in tests/e2e/test_firewall_box.py).
    assert any(re.search(r"-A postern-block -m limit --limit \S+ --limit-burst \d+ -j LOG", l)
               for l in net.rules(4)), net.rules(4)


def icmp_replies(net, host, count):
    out = net.run("wan", PY, str(PEERS / "icmpflood.py"), host, str(count))
    return int(out.stdout.strip())


def test_wan_icmp_answered_rate_limited(net):
    """From the WAN only replies and rate-limited ICMP reach the box: a
    burst of 200 echo requests gets the burst allowance back (20, at 5/s
    after it), not 200 (the control above gets them all)."""
    r = net.apply(CONF)
    assert r.returncode == 0, r.stderr
    got = icmp_replies(net, BOX_WAN, 200)
    assert 1 <= got <= 100, got


def test_check_tests_without_loading(net):
    """`postern firewall check` generates the rule set and has the kernel
    tools test it (iptables-restore --test): nothing is loaded."""
    r = net.apply(CONF)
    assert r.returncode == 0, r.stderr
    before4, before6 = net.rules(4), net.rules(6)
    conf = net.tmp / "check.conf"
    conf.write_text(CONF + "[firewall]\nforeign-dns reject\n")
    r = net.run("box", net.postern, "firewall", "check", str(conf), check=False, env=net.env)
    assert r.returncode == 0 and "rule set ok" in r.stdout, r.stdout + r.stderr
    assert net.rules(4) == before4 and net.rules(6) == before6
    # An invalid configuration: the error, with its line.
    conf.write_text(CONF.replace("address 192.168.10.1/24", "address 192.168.10.1/33"))
    r = net.run("box", net.postern, "firewall", "check", str(conf), check=False, env=net.env)
    assert r.returncode == 1 and "check.conf:" in r.stderr, r.stdout + r.stderr
    # A rule set the kernel tools refuse: reported, still nothing loaded.
    fake = net.tmp / "fake-check"
    fake.mkdir(exist_ok=True)
    (fake / "refuse-restore").write_text(
        "#!/bin/sh\ncat >/dev/null; echo 'line 7: refuse-restore: simulated bad rule' >&2; exit 2\n")
    (fake / "refuse-restore").chmod(0o755)
    env = dict(net.env, POSTERN_IPTABLES="refuse", PATH=f"{fake}:{os.environ['PATH']}")
    r = net.run("box", net.postern, "firewall", "check", str(conf.with_name("postern.conf")),
                check=False, env=env)
    assert r.returncode == 1 and "simulated bad rule" in r.stderr, r.stdout + r.stderr
    assert net.rules(4) == before4 and net.rules(6) == before6


def test_ipv6_same_policy(net):
    r = net.apply(CONF)
    assert r.returncode == 0, r.stderr
    lan = net.probe("lan", WAN6, MAIL_PORTS + [853])
    assert lan == {p: "reset" for p in MAIL_PORTS + [853]}, lan
    assert net.probe("lan", WAN6, [80]) == {80: f"open wan 80 from {LAN6}"}
    assert net.probe("box", WAN6, [25]) == {25: f"open wan 25 from {BOX_WAN6}"}
    wan = net.probe("wan", BOX_WAN6, [587, 993, 443], timeout=1)
    assert wan == {587: "timeout", 993: "timeout", 443: "timeout"}, wan
    # dnsd answers on IPv4: foreign DNS over IPv6 is refused, not redirected.
    assert not net.dig("lan", WAN6, "probe.office.lan").ok
    # The LAN reaches the box's services over IPv6 too, nothing else.
    svc = net.probe("lan", BOX_LAN6, [587, 993, 2222])
    assert svc == {587: f"open box 587 from {LAN6}", 993: f"open box 993 from {LAN6}",
                   2222: "reset"}, svc
    wan = net.probe("wan", BOX_LAN6, [587, 443], timeout=1)
    assert wan == {587: "timeout", 443: "timeout"}, wan


CONNECT_FROM = """import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.bind((sys.argv[1], 0))
s.settimeout(5)
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
    print("open")
except ConnectionRefusedError:
    print("reset")
except OSError as e:
    print("error", e)
"""


def test_ipv6_blocked_counted_per_host(net):
    """Blocked attempts over IPv6 are counted per full address, like IPv4:
    two LAN hosts of one /64 get a line each; an address outside the
    hand-numbered range (a random interface identifier) counts in the
    prefix's line."""
    r = net.apply(CONF)                     # counters start at zero
    assert r.returncode == 0, r.stderr
    assert net.probe("lan", WAN6, MAIL_PORTS) == {p: "reset" for p in MAIL_PORTS}
    extra = ["fd00:10::51", "fd00:10::a1b2:c3d4:e5f6:1234"]
    try:
        for a in extra:
            net.run("lan", "ip", "-6", "addr", "add", f"{a}/64", "dev", "lan0", "nodad")
        for a in extra:
            out = net.run("lan", PY, "-c", CONNECT_FROM, a, WAN6, "25").stdout.strip()
            assert out == "reset", (a, out)
    finally:
        for a in extra:
            net.run("lan", "ip", "-6", "addr", "del", f"{a}/64", "dev", "lan0", check=False)
    out = net.run("box", net.postern, "firewall", "blocked", env=net.env).stdout
    counts = dict(l.rsplit(None, 1) for l in out.splitlines()[1:])
    assert int(counts.get(LAN6, 0)) >= len(MAIL_PORTS), out
    assert int(counts.get("fd00:10::51", 0)) >= 1, out
    assert int(counts.get("fd00:10::/64", 0)) >= 1, out
    assert "fd00:10::a1b2:c3d4:e5f6:1234" not in counts, out


def test_reject_mode_and_exception(net):
    conf = CONF + "[firewall]\nforeign-dns reject\nallow 192.168.10.50 25\n"
    r = net.apply(conf)
    assert r.returncode == 0, r.stderr
    # Foreign DNS fails (refused at once); the box's own resolver answers.
    d = net.dig("lan", WAN, "probe.office.lan")
    assert not d.ok and "10.6.6.6" not in d.stdout, d.stdout
    assert not net.dig("lan", WAN, "probe.office.lan", tcp=True).ok
    assert net.dig("lan", BOX_LAN, "probe.office.lan").addr == "10.9.9.9"
    # The exception opens port 25 for this host only; the others stay shut.
    lan = net.probe("lan", WAN, [25, 587])
    assert lan == {25: f"open wan 25 from {BOX_WAN}", 587: "reset"}, lan


def test_invalid_change_keeps_previous_rules(net):
    r = net.apply(CONF)
    assert r.returncode == 0, r.stderr
    before4, before6 = net.rules(4), net.rules(6)
    assert any("DNAT" in l for l in before4)
    # A configuration that yields no rule set (WAN and LAN on one port).
    bad = CONF.replace("interface eth1", "interface eth0")
    r = net.apply(bad, name="bad.conf")
    assert r.returncode == 1
    assert "single-interface" in r.stderr and "previous rules stay in force" in r.stderr
    assert "FALLBACK" not in r.stderr       # rules of ours were in force
    assert net.rules(4) == before4 and net.rules(6) == before6
    # A rule set the kernel refuses half-way (the IPv6 load fails after
    # IPv4 went in): both families go back to the previous rules.
    fake = net.tmp / "fake"
    fake.mkdir(exist_ok=True)
    (fake / "ip6fail-restore").write_text(
        "#!/bin/sh\ncase \" $* \" in *' --test '*) exec ip6tables-legacy-restore \"$@\" ;; esac\n"
        "cat >/dev/null; echo 'ip6fail-restore: simulated kernel refusal' >&2; exit 2\n")
    (fake / "ip6fail-save").write_text("#!/bin/sh\nexec ip6tables-legacy-save \"$@\"\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    env = dict(net.env, POSTERN_IP6TABLES="ip6fail", PATH=f"{fake}:{os.environ['PATH']}")
    r = net.apply(CONF + "[firewall]\nforeign-dns reject\n", env=env, name="other.conf")
    assert r.returncode == 1, r.stdout
    assert "simulated kernel refusal" in r.stderr
    assert "previous IPv4 rules stay in force" in r.stderr
    assert net.rules(4) == before4 and net.rules(6) == before6
    # ... and the previous policy still works.
    assert net.dig("lan", WAN, "probe.office.lan").addr == "10.9.9.9"


HALF_RESTORE = """#!/bin/sh
# iptables-restore that, the first time it really loads, loads only the
# filter table and then fails as if the kernel refused the nat table.
case " $* " in *' --test '*) exec iptables-legacy-restore "$@" ;; esac
if [ -e "$HALF_MARK" ]; then exec iptables-legacy-restore "$@"; fi
: > "$HALF_MARK"
awk '/^\\*/ { skip = ($0 == "*nat") } !skip' | iptables-legacy-restore "$@" || exit 1
echo 'v4half-restore: simulated refusal of the nat table' >&2
exit 2
"""


def test_half_loaded_ipv4_rolled_back(net):
    """The IPv4 load fails after its filter table went in: the previous
    filter and nat tables are put back, IPv6 is never touched, and the old
    policy still works. A broken rule set is never half-applied."""
    r = net.apply(CONF)
    assert r.returncode == 0, r.stderr
    before4, before6 = net.rules(4), net.rules(6)
    fake = net.tmp / "fake-half"
    fake.mkdir(exist_ok=True)
    (fake / "v4half-restore").write_text(HALF_RESTORE)
    (fake / "v4half-save").write_text("#!/bin/sh\nexec iptables-legacy-save \"$@\"\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    mark = fake / "loaded-once"
    env = dict(net.env, POSTERN_IPTABLES="v4half", HALF_MARK=str(mark),
               PATH=f"{fake}:{os.environ['PATH']}")
    new = CONF + "[firewall]\nforeign-dns reject\nallow 192.168.10.50 25\n"
    r = net.apply(new, env=env, name="half.conf")
    assert mark.exists(), "the fake tool never loaded anything: the test proves nothing"
    assert r.returncode == 1, r.stdout
    assert "simulated refusal of the nat table" in r.stderr
    assert "previous IPv4 rules stay in force" in r.stderr
    assert net.rules(4) == before4 and net.rules(6) == before6
    assert net.dig("lan", WAN, "probe.office.lan").addr == "10.9.9.9"   # still redirected
    assert net.probe("lan", WAN, [25]) == {25: "reset"}                 # the allow never came


def test_single_interface_mode_protects_only_the_box(net):
    conf = ("mail-domain example.com\n[lan]\ninterface eth1\naddress 192.168.10.1/24\n"
            "gateway 192.168.10.254\n[firewall]\nsingle-interface yes\n")
    r = net.apply(conf)
    assert r.returncode == 0, r.stderr
    assert "single-interface" in r.stdout
    svc = net.probe("lan", BOX_LAN, [587, 2222])
    assert svc == {587: f"open box 587 from {LAN}", 2222: "reset"}, svc
    # No forwarding, no NAT: the box is not the office's router here.
    assert net.probe("lan", WAN, [80], timeout=1) == {80: "timeout"}
    assert net.probe("wan", BOX_WAN, [587], timeout=1) == {587: "timeout"}
    # show prints the rules the office router should carry.
    out = net.run("box", net.postern, "firewall", "show", str(net.tmp / "postern.conf"),
                  env=net.env).stdout
    assert "for the office router" in out
    assert "-A postern-forward -s 192.168.10.1 -j ACCEPT" in out


# ---- failing closed (docs/firewall.md "Fallback") --------------------------

def fake_tools(net, name, restore_body, family=4):
    """A directory with NAME, NAME-restore, NAME-save standing in for the
    iptables tools: NAME-restore runs restore_body (sh), the others are the
    host's legacy tools. Returns the env that makes postern use them."""
    real = "iptables-legacy" if family == 4 else "ip6tables-legacy"
    d = net.tmp / f"fake-{name}"
    d.mkdir(exist_ok=True)
    (d / f"{name}-restore").write_text(f"#!/bin/sh\nREAL={real}-restore\n{restore_body}\n")
    (d / f"{name}-save").write_text(f"#!/bin/sh\nexec {real}-save \"$@\"\n")
    (d / name).write_text(f"#!/bin/sh\nexec {real} \"$@\"\n")
    for f in d.iterdir():
        f.chmod(0o755)
    var = "POSTERN_IPTABLES" if family == 4 else "POSTERN_IP6TABLES"
    return {var: name, "PATH": f"{d}:{os.environ['PATH']}"}


# A kernel without MASQUERADE: every rule set naming it is refused.
NO_MASQ = """input=$(cat)
case "$input" in *MASQUERADE*) echo "nomasq-restore: line 3: simulated: no MASQUERADE in this kernel" >&2; exit 1 ;; esac
printf '%s\n' "$input" | exec $REAL "$@"
"""
REFUSE_ALL = """cat >/dev/null; echo "refuse-restore: simulated: no netfilter modules" >&2; exit 1"""


def status_env(net, **extra):
    st = net.tmp / "status"
    shutil.rmtree(st, ignore_errors=True)
    return dict(net.env, POSTERN_STATUS_DIR=str(st), **extra), st


def alerts(net, env):
    data = net.tmp / "data"
    data.mkdir(exist_ok=True)
    out = net.run("box", net.postern, "alerts", "show", "--data", str(data), "--services",
                  str(data / "none"), env=env, check=False).stdout
    return dict(l.split("\t", 1) for l in out.splitlines() if "\t" in l)


def only_admin_from_lan(net):
    """The fallback's policy, proven from the LAN host and the WAN."""
    lan = net.probe("lan", BOX_LAN, [443, 80, 587, 993, 2222], timeout=1)
    assert lan == {443: f"open box 443 from {LAN}", 80: f"open box 80 from {LAN}",
                   587: "timeout", 993: "timeout", 2222: "timeout"}, lan
    assert net.dig("lan", BOX_LAN, "probe.office.lan").addr == "10.9.9.9"
    lan6 = net.probe("lan", BOX_LAN6, [443, 587], timeout=1)
    assert lan6 == {443: f"open box 443 from {LAN6}", 587: "timeout"}, lan6


def nothing_from_wan_nothing_forwarded(net):
    for host in (BOX_WAN, BOX_LAN):
        wan = net.probe("wan", host, BOX_PORTS, timeout=1)
        assert wan == {p: "timeout" for p in BOX_PORTS}, (host, wan)
    assert net.probe("wan", BOX_WAN6, [443, 587], timeout=1) == {443: "timeout", 587: "timeout"}
    assert not net.dig("wan", BOX_LAN, "probe.office.lan").ok
    assert net.probe("lan", WAN, [80, 25], timeout=1) == {80: "timeout", 25: "timeout"}
    assert net.probe("lan", WAN6, [80], timeout=1) == {80: "timeout"}
    assert not net.dig("lan", WAN, "probe.office.lan").ok     # no redirect, no forwarding
    assert net.probe("wan", LAN, [22], timeout=1) == {22: "timeout"}
    # The box itself still gets its replies (it can fetch and relay).
    assert net.probe("box", WAN, [25]) == {25: f"open wan 25 from {BOX_WAN}"}


def test_fallback_when_nothing_in_force(net):
    """At boot no rule set is in force: when the generated one is refused
    (here a kernel without MASQUERADE), apply loads the fallback: from the
    LAN only the admin page (and DNS, DHCP), nothing from the WAN, nothing
    forwarded; IPv6 the same. It says so and raises the dashboard alert;
    the next good apply clears it."""
    flush(net)
    env, st = status_env(net, **fake_tools(net, "nomasq", NO_MASQ))
    r = net.apply(CONF, env=env)
    assert r.returncode == 1, r.stdout
    assert "simulated: no MASQUERADE" in r.stderr, r.stderr
    assert "FALLBACK" in r.stderr and "only the admin page" in r.stderr, r.stderr
    rules4, rules6 = net.rules(4), net.rules(6)
    assert "-A INPUT -i eth1 -j postern-fallback" in rules4, rules4
    assert "-A INPUT -i eth1 -j postern-fallback" in rules6, rules6
    assert ":FORWARD DROP " in rules4 and ":FORWARD DROP " in rules6
    only_admin_from_lan(net)
    nothing_from_wan_nothing_forwarded(net)
    rec = (st / "firewall-rules").read_text()
    assert "result=failed" in rec and "MASQUERADE" in rec, rec
    a = alerts(net, env)
    assert "in fallback" in a.get("firewall", ""), a
    # A second failing apply keeps the fallback (a rule set of ours is in
    # force), and a good one replaces it and clears the alert.
    r = net.apply(CONF, env=env)
    assert r.returncode == 1 and "FALLBACK" not in r.stderr, r.stderr
    assert net.rules(4) == rules4
    r = net.apply(CONF, env=dict(env, **{k: v for k, v in net.env.items() if k in ("POSTERN_IPTABLES", "PATH")}))
    assert r.returncode == 0, r.stderr
    assert "result=ok" in (st / "firewall-rules").read_text()
    assert "firewall" not in alerts(net, env)
    assert net.probe("lan", BOX_LAN, [587]) == {587: f"open box 587 from {LAN}"}


def test_fallback_without_names(net):
    """A configuration that yields no rule set with WAN and LAN on one
    port: the fallback may not name that port (it would open the admin page
    to the WAN), so it takes the form without names: nothing reaches the
    box but replies."""
    flush(net)
    env, st = status_env(net)
    r = net.apply(CONF.replace("interface eth1", "interface eth0"), env=env, name="same.conf")
    assert r.returncode == 1
    assert "FALLBACK" in r.stderr and "without interface names" in r.stderr, r.stderr
    rules4 = net.rules(4)
    assert ":postern-fallback - " in rules4 and not any("-j postern-fallback" in l for l in rules4)
    assert net.probe("lan", BOX_LAN, [443, 80], timeout=1) == {443: "timeout", 80: "timeout"}
    nothing_from_wan_nothing_forwarded(net)
    assert "without interface names" in (st / "firewall-rules").read_text()


def test_drop_policies_as_last_resort(net):
    """Even the fallback refused (a kernel without the modules): the
    built-in chains' policies become DROP."""
    flush(net)
    env, st = status_env(net, **fake_tools(net, "refuse", REFUSE_ALL))
    env6 = fake_tools(net, "refuse6", REFUSE_ALL, family=6)
    env["POSTERN_IP6TABLES"] = env6["POSTERN_IP6TABLES"]
    env["PATH"] = env6["PATH"].split(":", 1)[0] + ":" + env["PATH"]
    r = net.apply(CONF, env=env)
    assert r.returncode == 1
    assert "policies are DROP" in r.stderr, r.stderr
    for tool in ("iptables-legacy", "ip6tables-legacy"):
        rules = net.run("box", tool, "-S").stdout.splitlines()
        assert "-P INPUT DROP" in rules and "-P FORWARD DROP" in rules, (tool, rules)
        assert "-A INPUT -i lo -j ACCEPT" in rules, rules
    assert net.probe("lan", BOX_LAN, [443], timeout=1) == {443: "timeout"}
    assert net.probe("wan", BOX_WAN, [443], timeout=1) == {443: "timeout"}
    assert net.probe("lan", WAN, [80], timeout=1) == {80: "timeout"}
    assert "policies are DROP" in (st / "firewall-rules").read_text()


BOOT = pathlib.Path(__file__).resolve().parents[2] / "rootfs" / "usr" / "libexec" / "postern"


def boot_script(net, conf_text, extra_path, env=None):
    """Runs the boot hook rootfs/usr/libexec/postern/firewall in the box."""
    conf = net.tmp / "boot.conf"
    conf.write_text(conf_text)
    console = net.tmp / "console"
    console.write_text("")
    e = dict(env or net.env, POSTERN_LIBEXEC=str(BOOT), POSTERN_CONF=str(conf),
             POSTERN_CONSOLE=str(console))
    e["PATH"] = f"{extra_path}:{e['PATH']}"
    r = net.run("box", "sh", str(BOOT / "firewall"), env=e, check=False)
    return r, console.read_text()


def test_boot_hook_fails_closed(net):
    """The boot path: the hook's `postern firewall apply` loads the
    fallback and the console says so; and should postern not run at all,
    the hook itself sets the DROP policies."""
    bindir = net.tmp / "boot-bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "postern").unlink(missing_ok=True)
    (bindir / "postern").symlink_to(net.postern)
    flush(net)
    env, st = status_env(net, **fake_tools(net, "nomasq", NO_MASQ))
    r, console = boot_script(net, CONF, bindir, env)
    assert r.returncode == 0, r.stderr + console
    assert "FALLBACK" in console and "only the admin page" in console, console
    assert "-A INPUT -i eth1 -j postern-fallback" in net.rules(4)
    only_admin_from_lan(net)
    # postern itself broken (it crashes): the hook's own last resort.
    broken = net.tmp / "broken-bin"
    broken.mkdir(exist_ok=True)
    (broken / "postern").write_text("#!/bin/sh\nkill -SEGV $$\n")
    (broken / "postern").chmod(0o755)
    flush(net)
    r, console = boot_script(net, CONF, broken)
    assert r.returncode == 0, r.stderr + console
    assert "setting the DROP policies" in console, console
    for tool in ("iptables-legacy", "ip6tables-legacy"):
        rules = net.run("box", tool, "-S").stdout.splitlines()
        assert "-P INPUT DROP" in rules and "-P FORWARD DROP" in rules, (tool, rules)
    assert net.probe("lan", BOX_LAN, [443], timeout=1) == {443: "timeout"}
    # And with a working postern and kernel the hook loads the real rules.
    flush(net)
    r, console = boot_script(net, CONF, bindir)
    assert r.returncode == 0 and "FALLBACK" not in console, console
    assert net.probe("lan", BOX_LAN, [587]) == {587: f"open box 587 from {LAN}"}


def env_of(postern, *args):
    out = sh(postern, "firewall", "env", *args).stdout
    return dict(re.fullmatch(r"(\w+)='([^']*)'", l).groups() for l in out.splitlines())


def test_env_for_the_boot_scripts(hostbin, tmp_path):
    """The settings the boot scripts use (no root needed): an unconfigured
    box gets the configuration's defaults with br-lan over every port."""
    postern = hostbin("postern")
    e = env_of(postern, str(tmp_path / "missing.conf"))
    assert (e["POSTERN_CONFIGURED"], e["POSTERN_LAN_IF"], e["POSTERN_LAN_PORTS"]) == ("no", "br-lan", "*")
    assert (e["POSTERN_LAN_ADDR"], e["POSTERN_LAN_PREFIX"], e["POSTERN_LAN_NETMASK"]) == \
        ("192.168.10.1", "24", "255.255.255.0")
    assert (e["POSTERN_DHCP"], e["POSTERN_DHCP_START"], e["POSTERN_DHCP_END"]) == \
        ("yes", "192.168.10.128", "192.168.10.254")
    assert (e["POSTERN_WAN_IF"], e["POSTERN_WAN_MODE"], e["POSTERN_NET_MODE"]) == ("eth0", "dhcp", "router")
    conf = tmp_path / "p.conf"
    conf.write_text("mail-domain example.com\n[wan]\nmode static\naddress 203.0.113.5/24\n"
                    "gateway 203.0.113.1\ndns 203.0.113.1 203.0.113.2\n[lan]\ninterface br0\n"
                    "bridge-ports eth1 eth2\naddress 10.20.0.1/16\ndhcp-lease 1h\n")
    e = env_of(postern, str(conf))
    assert e["POSTERN_CONFIGURED"] == "yes" and e["POSTERN_LAN_PORTS"] == "eth1 eth2"
    assert (e["POSTERN_WAN_ADDR"], e["POSTERN_WAN_PREFIX"], e["POSTERN_WAN_GW"]) == \
        ("203.0.113.5", "24", "203.0.113.1")
    assert e["POSTERN_WAN_DNS"] == "203.0.113.1 203.0.113.2"
    assert (e["POSTERN_LAN_NETMASK"], e["POSTERN_DHCP_LEASE"]) == ("255.255.0.0", "3600")
    # An invalid file is reported, never replaced by defaults silently.
    conf.write_text("mail-domain example.com\n[lan]\naddress 10.0.0.1/31\n")
    r = sh(postern, "firewall", "env", str(conf), check=False)
    assert r.returncode == 1 and "p.conf:3" in r.stderr
    assert sh(postern, "firewall", "bogus", check=False).returncode == 1
