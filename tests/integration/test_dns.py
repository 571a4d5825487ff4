"""dnsd against real clients (dig, kdig, dnspython) with unbound as its
upstream on loopback: the internal zone, PTR, MX, SRV, forwarding, the
cache (decreasing TTLs, NXDOMAIN cached), truncation and TCP fallback,
rebinding protection, the DoH canary, the rate limit."""
import pathlib
import sys
import shutil
import subprocess
import time

import dns.flags
import dns.rcode
import dns.reversename
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dns"))
from dnsd_util import BASE_CONF, Dnsd, Unbound, free_udp_tcp_port, rrs, ttls  # noqa: E402


@pytest.fixture(scope="module")
def unbound(tmp_path_factory):
    u = Unbound(tmp_path_factory.mktemp("unbound"), free_udp_tcp_port())
    yield u
    u.stop()


@pytest.fixture
def dnsd(hostbin, tmp_path, unbound):
    started = []

    def start(extra=""):
        d = Dnsd(hostbin("dnsd"), tmp_path, free_udp_tcp_port(), unbound.port, extra)
        started.append(d)
        return d
    yield start
    for d in started:
        assert d.stop() == 0, d.logtext()


def test_internal_zone(dnsd):
    d = dnsd()
    r = d.query("postern.office.lan")
    assert r.flags & dns.flags.AA
    assert rrs(r) == [("postern.office.lan", "A", "192.168.10.1")]
    assert rrs(d.query("printer.office.lan")) == [("printer.office.lan", "A", "192.168.10.20")]
    assert rrs(d.query("NAS.Office.LAN", "AAAA")) == [("nas.office.lan", "AAAA", "fd00::21")]
    soa = rrs(d.query("office.lan", "SOA"))
    assert soa[0][2].startswith("postern.office.lan. hostmaster.office.lan. ")
    assert rrs(d.query("office.lan", "NS")) == [("office.lan", "NS", "postern.office.lan.")]


def test_ipv6_names_when_configured(hostbin, tmp_path, unbound):
    """With [lan] address6 the box's name has its AAAA, and the IPv6
    reverse zone answers its PTR; without it, no AAAA (NODATA)."""
    conf = BASE_CONF.replace("address 192.168.10.1/24\n",
                             "address 192.168.10.1/24\naddress6 fd00:10::1/64\n")
    d = Dnsd(hostbin("dnsd"), tmp_path, free_udp_tcp_port(), unbound.port, base=conf)
    try:
        r = d.query("postern.office.lan", "AAAA")
        assert r.flags & dns.flags.AA
        assert rrs(r) == [("postern.office.lan", "AAAA", "fd00:10::1")]
        rev = dns.reversename.from_address("fd00:10::1").to_text(omit_final_dot=True)
        assert rrs(d.query(rev, "PTR")) == [(rev, "PTR", "postern.office.lan.")]
        r = d.query(dns.reversename.from_address("fd00:10::99").to_text(), "PTR")
        assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    finally:
        assert d.stop() == 0, d.logtext()
    d = Dnsd(hostbin("dnsd"), tmp_path, free_udp_tcp_port(), unbound.port)
    try:
        r = d.query("postern.office.lan", "AAAA")
        assert r.rcode() == dns.rcode.NOERROR and not r.answer
    finally:
        assert d.stop() == 0, d.logtext()


def test_nxdomain_and_nodata_internal(dnsd):
    d = dnsd()
    r = d.query("nope.office.lan")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    assert rrs(r, "authority")[0][1] == "SOA"
    r = d.query("printer.office.lan", "MX")       # the name exists: NODATA
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    r = d.query("_tcp.office.lan", "SRV")           # empty non-terminal: NODATA
    assert r.rcode() == dns.rcode.NOERROR and not r.answer


def test_ptr_mx_srv(dnsd):
    d = dnsd()
    assert rrs(d.query("1.10.168.192.in-addr.arpa", "PTR"))[0][2] == "postern.office.lan."
    assert rrs(d.query("20.10.168.192.in-addr.arpa", "PTR"))[0][2] == "printer.office.lan."
    r = d.query("99.10.168.192.in-addr.arpa", "PTR")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    assert rrs(d.query("example.com", "MX")) == [("example.com", "MX", "10 postern.office.lan.")]
    assert rrs(d.query("office.lan", "MX")) == [("office.lan", "MX", "10 postern.office.lan.")]
    for svc, port in (("_submission._tcp", 587), ("_imap._tcp", 143), ("_imaps._tcp", 993)):
        assert rrs(d.query(f"{svc}.example.com", "SRV"))[0][2] == f"0 1 {port} postern.office.lan."


@pytest.mark.skipif(not shutil.which("dig") or not shutil.which("kdig"), reason="dig/kdig missing")
def test_dig_and_kdig(dnsd):
    d = dnsd()
    for tool in ("dig", "kdig"):
        for extra in ([], ["+tcp"]):
            out = subprocess.run([tool, "@127.0.0.1", "-p", str(d.port), "+short", *extra,
                                  "-x", "192.168.10.20"], capture_output=True, text=True,
                                 timeout=10).stdout
            assert out.strip() == "printer.office.lan.", (tool, extra, out)
        out = subprocess.run([tool, "@127.0.0.1", "-p", str(d.port), "+short",
                              "www.internet.test"], capture_output=True, text=True,
                             timeout=10).stdout
        assert out.strip() == "192.0.2.1", (tool, out)


def test_forwarded_and_cached_ttl_decreases(dnsd, unbound):
    d = dnsd()
    asked = unbound.queries("cached.internet.test")
    r = d.query("cached.internet.test")
    assert rrs(r) == [("cached.internet.test", "A", "192.0.2.9")]
    assert r.flags & dns.flags.RA and not r.flags & dns.flags.AA
    first = ttls(r)[0]
    time.sleep(1.1)
    second = ttls(d.query("CACHED.internet.TEST"))[0]
    # from dnsd's cache: unbound was asked once (its local data would give
    # the same TTL every time), and the TTL counts down
    assert second < first
    assert unbound.queries("cached.internet.test") == asked + 1
    # unbound gives the CNAME alone (its target would need recursion): it
    # is passed on as it came (the whole chain: test_dns_spoof.py)
    r = d.query("alias.internet.test")
    assert [t for _, t, _ in rrs(r)] == ["CNAME"]


def test_nxdomain_cached(dnsd, unbound):
    d = dnsd()
    r = d.query("nothing.internet.test")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert rrs(r, "authority")[0][1] == "SOA"
    # RFC 2308: negative TTL = min(SOA TTL, MINIMUM) = 60, counting down
    assert r.authority[0].ttl <= 60
    time.sleep(1.1)
    r2 = d.query("nothing.internet.test")
    assert r2.rcode() == dns.rcode.NXDOMAIN and r2.authority[0].ttl < r.authority[0].ttl


def test_ttl_expiry_and_min_ttl(dnsd):
    d = dnsd()
    assert ttls(d.query("short.internet.test"))[0] <= 2
    time.sleep(2.2)
    r = d.query("short.internet.test")        # expired, asked again
    assert rrs(r) == [("short.internet.test", "A", "192.0.2.2")]
    assert ttls(r)[0] in (1, 2)


def test_min_ttl_clamp(dnsd):
    d = dnsd("min-ttl 60\n")
    assert ttls(d.query("short.internet.test"))[0] == 60


def test_truncation_and_tcp_fallback(dnsd):
    d = dnsd()
    # dnsd gets a truncated UDP answer from unbound and asks again over TCP;
    # a plain (512-byte) UDP client then gets TC, a TCP client everything
    r = d.query("big.internet.test", "TXT")
    assert r.flags & dns.flags.TC and not r.answer
    r = d.query("big.internet.test", "TXT", payload=1232)
    assert r.flags & dns.flags.TC
    r = d.query("big.internet.test", "TXT", tcp=True)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 12
    assert r.edns < 0


@pytest.mark.skipif(not shutil.which("dig"), reason="dig missing")
def test_dig_retries_over_tcp(dnsd):
    d = dnsd()
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(d.port), "+noedns", "big.internet.test",
                          "TXT"], capture_output=True, text=True, timeout=10).stdout
    assert "Truncated, retrying in TCP mode" in out
    assert out.count("IN\tTXT\t") == 12


def test_edns_opt_echoed(dnsd):
    d = dnsd()
    r = d.query("www.internet.test", payload=4096)
    assert r.edns == 0 and r.payload == 1232
    assert d.query("www.internet.test").edns < 0


def test_rebinding_blocked_except_allowed(dnsd):
    d = dnsd()
    for name, rdtype in (("private.internet.test", "A"), ("loop.internet.test", "A"),
                         ("v6private.internet.test", "AAAA")):
        r = d.query(name, rdtype)
        assert r.rcode() == dns.rcode.NOERROR and not r.answer, name
    assert rrs(d.query("mixed.internet.test")) == [("mixed.internet.test", "A", "192.0.2.3")]
    assert rrs(d.query("nas.lan-ok.test")) == [("nas.lan-ok.test", "A", "192.168.50.2")]
    assert "rebinding" in d.logtext()


def test_doh_canary_nxdomain(dnsd):
    d = dnsd()
    for t in ("A", "AAAA", "TXT"):
        assert d.query("use-application-dns.net", t).rcode() == dns.rcode.NXDOMAIN


def test_rate_limit(dnsd):
    d = dnsd("rate-limit 20\n")
    import socket
    import dns.message
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    q = dns.message.make_query("postern.office.lan", "A").to_wire()
    for _ in range(100):
        s.sendto(q, ("127.0.0.1", d.port))
    answers = 0
    try:
        while True:
            s.recv(2048)
            answers += 1
    except socket.timeout:
        pass
    s.close()
    assert 15 <= answers <= 30, answers
    time.sleep(0.3)       # tokens come back
    assert d.query("postern.office.lan").answer


def test_formerr_and_refused(dnsd):
    d = dnsd()
    import dns.message
    import dns.query
    q = dns.message.make_query("postern.office.lan", "A", rdclass="CH")
    assert dns.query.udp(q, "127.0.0.1", port=d.port, timeout=3).rcode() == dns.rcode.REFUSED
    q = dns.message.make_query("postern.office.lan", "A")
    q.set_opcode(2)   # STATUS
    assert dns.query.udp(q, "127.0.0.1", port=d.port, timeout=3).rcode() == dns.rcode.NOTIMP


def test_tcp_pipelined_forwarded(dnsd):
    """Two queries on one TCP connection, both forwarded (the client waits
    on the upstream), answered in whatever order, then an internal one."""
    import socket
    import struct
    import dns.message
    d = dnsd()
    qs = [dns.message.make_query(n, "A") for n in
          ("www.internet.test", "mixed.internet.test", "postern.office.lan")]
    with socket.create_connection(("127.0.0.1", d.port), timeout=4) as s:
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in qs)))
        got = {}
        buf = b""
        while len(got) < 3:
            chunk = s.recv(4096)
            assert chunk, "connection closed early"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                m = dns.message.from_wire(buf[2:2 + n])
                buf = buf[2 + n:]
                got[m.id] = rrs(m)
    assert got[qs[0].id] == [("www.internet.test", "A", "192.0.2.1")]
    assert got[qs[1].id] == [("mixed.internet.test", "A", "192.0.2.3")]
    assert got[qs[2].id] == [("postern.office.lan", "A", "192.168.10.1")]


def test_max_ttl_clamp(dnsd):
    d = dnsd("max-ttl 100\n")
    assert ttls(d.query("www.internet.test"))[0] <= 100      # unbound says 300
    assert ttls(d.query("www.internet.test"))[0] <= 100      # and from the cache


def test_negative_answers_cached_not_asked_again(dnsd, unbound):
    d = dnsd()
    for _ in range(3):
        assert d.query("neg-cache.internet.test").rcode() == dns.rcode.NXDOMAIN
    assert unbound.queries("neg-cache.internet.test") == 1
    # NODATA (the name exists, not the type): cached the same way
    for _ in range(3):
        r = d.query("public6.internet.test", "A")
        assert r.rcode() == dns.rcode.NOERROR and not r.answer
        assert rrs(r, "authority")[0][1] == "SOA"
    assert unbound.queries("public6.internet.test") == 1


def test_rebinding_v4_mapped_blocked_public_v6_kept(dnsd):
    d = dnsd()
    r = d.query("mapped.internet.test", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert rrs(d.query("public6.internet.test", "AAAA")) == [
        ("public6.internet.test", "AAAA", "2001:db8::1")]


def test_edns_udp_size_and_truncation_bounds(dnsd):
    """Every UDP answer fits the client's EDNS0 size, capped at 1232
    (RFC 6891 6.2.5); what does not fit comes back as TC with no records."""
    import dns.message
    import dns.query
    d = dnsd()
    for payload in (512, 1232, 4096):
        q = dns.message.make_query("big.internet.test", "TXT", use_edns=0, payload=payload)
        wire = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=4,
                             ignore_trailing=True).to_wire()
        assert len(wire) <= min(payload, 1232)
    q = dns.message.make_query("www.internet.test", "A", use_edns=0, payload=600)
    r = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=4)
    assert r.payload == 1232 and not r.flags & dns.flags.TC and r.answer
