"""dnsd and the files others write for it: it leaves root after binding
port 53; the WAN DHCP client's DNS servers (wan-dns) become its upstreams
when [dns] upstream is empty; BusyBox udhcpd's lease file gives the LAN's
host names, forward and reverse, within 5 seconds, sanitised, until they
expire. The lease files are written in udhcpd's binary format here; the
test at the end runs the real udhcpd and udhcpc in network namespaces."""
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import sys
import time

import dns.rcode
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dns"))
from dnsd_util import Dnsd, Unbound, free_udp_tcp_port, rrs  # noqa: E402

NO_UPSTREAM_CONF = """hostname postern
mail-domain example.com
internal-domain office.lan
[lan]
address 192.168.10.1/24
[dns]
host printer 192.168.10.20
"""


@pytest.fixture(scope="module")
def unbound(tmp_path_factory):
    u = Unbound(tmp_path_factory.mktemp("unbound"), free_udp_tcp_port())
    yield u
    u.stop()


@pytest.fixture
def dnsd(hostbin, tmp_path):
    started = []

    def start(upstream_port=None, **kw):
        d = Dnsd(hostbin("dnsd"), tmp_path, free_udp_tcp_port(), upstream_port, **kw)
        started.append(d)
        return d
    yield start
    for d in started:
        assert d.stop() == 0, d.logtext()


def write_atomic(path, data):
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.rename(tmp, path)


def lease_file(leases, written_at=None):
    """udhcpd's format: int64 BE written_at, then struct dyn_lease records
    (uint32 BE seconds left, IPv4, MAC[6], hostname[20], pad[2])."""
    now = int(time.time()) if written_at is None else written_at
    out = struct.pack(">q", now)
    for i, (name, ip, left) in enumerate(leases):
        out += struct.pack(">I4s6s20s2x", left, socket.inet_aton(ip),
                           bytes([2, 0, 0, 0, 0, i]), name.encode()[:20])
    return out


def wait_answer(d, name, rdtype="A", timeout=5.0, want=True):
    """Asks until name has an answer (want) or none; returns seconds taken."""
    start = time.time()
    while True:
        r = d.query(name, rdtype)
        if bool(r.answer) == want:
            return time.time() - start, r
        assert time.time() - start < timeout, f"{name} {rdtype}: still {r}"
        time.sleep(0.05)


def low_free_port():
    for port in range(1000, 900, -1):
        try:
            with socket.socket() as s, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                s.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    pytest.skip("no free privileged port")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to bind a privileged port")
def test_binds_privileged_port_then_drops_root(dnsd):
    port = low_free_port()
    d = dnsd(listen=f"127.0.0.1:{port}")
    d.port = port
    status = pathlib.Path(f"/proc/{d.proc.pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    gids = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
    groups = next(line for line in status.splitlines() if line.startswith("Groups:")).split()[1:]
    assert uids == ["65534"] * 4 and gids == ["65534"] * 4, status
    assert "0" not in groups
    assert rrs(d.query("postern.office.lan")) == [("postern.office.lan", "A", "192.168.10.1")]
    # still able to re-read its configuration as the unprivileged user
    d.conf.write_text(d.conf.read_text() + "host scanner 192.168.10.30\n")
    d.proc.send_signal(1)
    wait_answer(d, "scanner.office.lan")


def test_upstreams_from_wan_dns_file(dnsd, unbound):
    d = dnsd(upstream_port=unbound.port, base=NO_UPSTREAM_CONF)
    assert d.query("www.internet.test").rcode() == dns.rcode.SERVFAIL   # no upstream yet
    write_atomic(d.wan_dns, b"# from the WAN's DHCP\n127.0.0.1\n")
    d.wait_log("1 DNS server(s) from the WAN")
    assert rrs(d.query("www.internet.test")) == [("www.internet.test", "A", "192.0.2.1")]
    # the provider changes its servers: an address nothing answers on
    write_atomic(d.wan_dns, b"127.0.0.2\n::1\n")
    d.wait_log("2 DNS server(s) from the WAN")
    assert d.query("mixed.internet.test", timeout=10).rcode() == dns.rcode.SERVFAIL


def test_dns_upstream_setting_wins_over_wan_dns(dnsd, unbound):
    d = dnsd(upstream_port=unbound.port)           # BASE_CONF: upstream 127.0.0.1
    write_atomic(d.wan_dns, b"127.0.0.2\n")
    d.wait_log("1 DNS server(s) from the WAN")
    assert rrs(d.query("www.internet.test")) == [("www.internet.test", "A", "192.0.2.1")]


def test_lease_names_forward_and_reverse_within_5s(dnsd):
    d = dnsd()
    r = d.query("deskpc.office.lan")
    assert r.rcode() == dns.rcode.NXDOMAIN
    # udhcpd rewrites the file in place: truncate, then write
    d.leases.write_bytes(lease_file([("DeskPC", "192.168.10.100", 3600),
                                     ("laptop-7", "192.168.10.101", 3600)]))
    took, r = wait_answer(d, "deskpc.office.lan")
    assert took < 5
    assert rrs(r) == [("deskpc.office.lan", "A", "192.168.10.100")]
    assert rrs(d.query("100.10.168.192.in-addr.arpa", "PTR")) == [
        ("100.10.168.192.in-addr.arpa", "PTR", "deskpc.office.lan.")]
    assert rrs(d.query("Laptop-7.office.lan"))[0][2] == "192.168.10.101"
    # a new lease appears, an old one goes away
    d.leases.write_bytes(lease_file([("laptop-7", "192.168.10.101", 3600),
                                     ("phone", "192.168.10.102", 3600)]))
    took, _ = wait_answer(d, "phone.office.lan")
    assert took < 5
    assert d.query("deskpc.office.lan").rcode() == dns.rcode.NXDOMAIN
    assert d.query("100.10.168.192.in-addr.arpa", "PTR").rcode() == dns.rcode.NXDOMAIN


def test_lease_expiry(dnsd):
    d = dnsd()
    d.leases.write_bytes(lease_file([("brief", "192.168.10.110", 2),
                                     ("stays", "192.168.10.111", 3600),
                                     ("gone", "192.168.10.112", 0)]))
    wait_answer(d, "brief.office.lan")
    assert d.query("gone.office.lan").rcode() == dns.rcode.NXDOMAIN
    # the file does not change: the expiry timer drops the name
    took, r = wait_answer(d, "brief.office.lan", want=False, timeout=5)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert d.query("stays.office.lan").answer
    # an old file: written 100 s ago with 60 s left, so expired already
    d.leases.write_bytes(lease_file([("old", "192.168.10.113", 60)], int(time.time()) - 100))
    d.wait_log("udhcpd.leases: 0 lease(s)")
    assert d.query("old.office.lan").rcode() == dns.rcode.NXDOMAIN


def test_lease_names_sanitised(dnsd):
    """A lease cannot take the box's names, static hosts, other leases'
    names or addresses, names outside one clean label, or addresses
    outside the LAN."""
    d = dnsd()
    d.leases.write_bytes(lease_file([
        ("postern", "192.168.10.120", 3600),        # the box
        ("printer", "192.168.10.121", 3600),        # a static host
        ("_tcp", "192.168.10.122", 3600),           # SRV parent, not a label anyway
        ("www.google.com", "192.168.10.123", 3600),  # udhcpd maps bad chars to '.'
        ("evil", "10.0.0.5", 3600),                  # outside the LAN prefix
        ("thief", "192.168.10.20", 3600),            # the printer's address
        ("-dash", "192.168.10.124", 3600),
        ("good", "192.168.10.125", 3600),
        ("GOOD", "192.168.10.126", 3600),            # same name again
    ]))
    wait_answer(d, "good.office.lan")
    assert rrs(d.query("postern.office.lan")) == [("postern.office.lan", "A", "192.168.10.1")]
    assert rrs(d.query("printer.office.lan")) == [("printer.office.lan", "A", "192.168.10.20")]
    assert rrs(d.query("good.office.lan")) == [("good.office.lan", "A", "192.168.10.125")]
    assert rrs(d.query("20.10.168.192.in-addr.arpa", "PTR"))[0][2] == "printer.office.lan."
    for n in ("www.google.com.office.lan", "evil.office.lan", "thief.office.lan",
              "-dash.office.lan"):
        assert not d.query(n).answer, n
    assert "lease evil: address outside the LAN prefix" in d.logtext()
    for n in ("120", "121", "123", "124", "126"):
        assert not d.query(f"{n}.10.168.192.in-addr.arpa", "PTR").answer, n


def test_truncated_and_garbage_lease_files_keep_the_names(dnsd):
    d = dnsd()
    good = lease_file([("deskpc", "192.168.10.100", 3600)])
    d.leases.write_bytes(good)
    wait_answer(d, "deskpc.office.lan")
    d.leases.write_bytes(good[:5])                 # half a header: ignored
    d.wait_log("udhcpd.leases: Invalid argument (keeping the previous leases)")
    assert d.query("deskpc.office.lan").answer
    d.leases.write_bytes(good + b"\x00" * 17)      # a partial record at the end
    d.wait_log("udhcpd.leases: 1 lease(s)")
    assert d.query("deskpc.office.lan").answer
    # written "in 2^62 seconds": a broken clock, nothing in it can expire
    d.leases.write_bytes(lease_file([("other", "192.168.10.100", 3600)], 2**62))
    end = time.time() + 5
    while d.logtext().count("(keeping the previous leases)") < 2 and time.time() < end:
        time.sleep(0.02)
    assert d.query("deskpc.office.lan").answer
    assert not d.query("other.office.lan").answer


BUSYBOX = shutil.which("busybox")


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


@pytest.fixture
def netns_pair():
    """Two namespaces joined by a veth pair: srv (udhcpd) and cli (udhcpc)."""
    if os.geteuid() != 0 or not BUSYBOX or not shutil.which("ip"):
        pytest.skip("needs root, busybox and ip")
    tag = f"pd{os.getpid() % 100000}"
    srv, cli = f"{tag}s", f"{tag}c"
    try:
        sh("ip", "netns", "add", srv)
        sh("ip", "netns", "add", cli)
        sh("ip", "link", "add", f"{tag}a", "netns", srv, "type", "veth", "peer", "name",
           f"{tag}b", "netns", cli)
        sh("ip", "-n", srv, "addr", "add", "192.168.10.1/24", "dev", f"{tag}a")
        sh("ip", "-n", srv, "link", "set", f"{tag}a", "up")
        sh("ip", "-n", cli, "link", "set", f"{tag}b", "up")
    except subprocess.CalledProcessError as e:
        sh("ip", "netns", "del", srv, check=False)
        sh("ip", "netns", "del", cli, check=False)
        pytest.skip(f"network namespaces unavailable: {e.stderr}")
    yield srv, cli, f"{tag}a", f"{tag}b"
    sh("ip", "netns", "del", srv, check=False)
    sh("ip", "netns", "del", cli, check=False)


def test_real_udhcpd_lease(dnsd, netns_pair, tmp_path):
    """BusyBox udhcpd hands a lease to BusyBox udhcpc sending host name
    "deskpc"; udhcpd writes its lease file (Debian's build writes it on
    SIGUSR1, the image's at each lease); dnsd resolves the name both ways."""
    srv, cli, sif, cif = netns_pair
    d = dnsd()
    conf = tmp_path / "udhcpd.conf"
    conf.write_text(f"start 192.168.10.100\nend 192.168.10.150\ninterface {sif}\n"
                    f"lease_file {d.leases}\noption subnet 255.255.255.0\n"
                    f"pidfile {tmp_path}/udhcpd.pid\n")
    server = subprocess.Popen(["ip", "netns", "exec", srv, BUSYBOX, "udhcpd", "-f", str(conf)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        script = tmp_path / "udhcpc.sh"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
        got = sh("ip", "netns", "exec", cli, BUSYBOX, "udhcpc", "-i", cif, "-n", "-q", "-f",
                 "-t", "10", "-T", "1", "-x", "hostname:deskpc", "-s", str(script))
        assert "lease of 192.168.10." in got.stdout + got.stderr, got
        server.send_signal(10)          # SIGUSR1: write the lease file now
        took, r = wait_answer(d, "deskpc.office.lan")
        assert took < 5
        ip = rrs(r)[0][2]
        assert ip.startswith("192.168.10.1")
        rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
        assert rrs(d.query(rev, "PTR")) == [(rev, "PTR", "deskpc.office.lan.")]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_full_lan_of_leases(dnsd):
    """250 leases (the whole /24 but the box and the printer): every name
    forward and reverse, found through the zone's index."""
    d = dnsd()
    hosts = [(f"pc{i}", f"192.168.10.{i}") for i in range(2, 255) if i not in (20, 21)][:250]
    d.leases.write_bytes(lease_file([(n, ip, 3600) for n, ip in hosts]))
    wait_answer(d, f"{hosts[-1][0]}.office.lan")
    d.wait_log("250 lease(s)")
    for n, ip in hosts[::17] + hosts[-1:]:
        assert rrs(d.query(f"{n}.office.lan")) == [(f"{n}.office.lan", "A", ip)]
        rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
        assert rrs(d.query(rev, "PTR")) == [(rev, "PTR", f"{n}.office.lan.")]
    assert d.query("pc1.office.lan").rcode() == dns.rcode.NXDOMAIN


UDHCPD_RUN = pathlib.Path(__file__).resolve().parents[2] / "rootfs" / "etc" / "sv" / "udhcpd" / "run"


def udhcpd_conf(tmp_path, start, end):
    """The udhcpd.conf the box's run script writes for a DHCP range: the
    script runs under BusyBox sh in a private mount namespace (its own
    /run), with a stand-in udhcpd that prints the file it was given."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "udhcpd").write_text('#!/bin/sh\ncat "$3"\n')
    (fake / "udhcpd").chmod(0o755)
    env = tmp_path / "network.env"
    env.write_text(f"POSTERN_LAN_IF='eth1'\nPOSTERN_DHCP_START='{start}'\n"
                   f"POSTERN_DHCP_END='{end}'\nPOSTERN_LAN_NETMASK='255.255.255.0'\n"
                   "POSTERN_LAN_ADDR='192.168.10.1'\nPOSTERN_DOMAIN='office.lan'\n"
                   "POSTERN_DHCP_LEASE='3600'\n")
    inner = (f"mount -t tmpfs tmpfs /run && mkdir /run/postern && cp {env} /run/postern/ && "
             f"PATH={fake}:$PATH exec {BUSYBOX} sh {UDHCPD_RUN}")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", BUSYBOX, "sh", "-c", inner],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    conf = {}
    for line in r.stdout.splitlines():
        words = line.split()
        n = 2 if words[:1] == ["option"] else 1
        conf[" ".join(words[:n])] = " ".join(words[n:])
    return conf


@pytest.mark.skipif(os.geteuid() != 0 or not BUSYBOX, reason="needs root and busybox")
def test_udhcpd_serves_the_whole_range(tmp_path):
    """BusyBox udhcpd stops at max_leases (235 by default): the run script
    sets it to the range's size, so a /24 range of 253 addresses is served
    whole; the box is router and DNS server."""
    conf = udhcpd_conf(tmp_path, "192.168.10.2", "192.168.10.254")
    assert conf["max_leases"] == "253", conf
    assert conf["option router"] == conf["option dns"] == "192.168.10.1", conf
    assert conf["lease_file"] == "/run/postern/udhcpd.leases"
    assert udhcpd_conf(tmp_path, "192.168.10.128", "192.168.10.254")["max_leases"] == "127"
    # a /16 range: capped at the 4096 leases dnsd reads
    assert udhcpd_conf(tmp_path, "10.20.1.0", "10.20.255.254")["max_leases"] == "4096"
