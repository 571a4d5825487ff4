"""dnsd forwarding over DNS-over-TLS (RFC 7858) to unbound's DoT listener
on loopback: the right pin works, with queries pipelined on one reused
connection; a wrong pin or a wrong name fails closed (SERVFAIL, and no
query ever reaches unbound); a server that drops the connection after the
ClientHello gets nothing but the ClientHello."""
import pathlib
import shutil
import socket
import subprocess
import sys
import threading

import dns.rcode
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dns"))
from dnsd_util import Dnsd, Unbound, free_udp_tcp_port, rrs  # noqa: E402

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl missing")


def make_cert(d):
    key, crt = d / "dot.key", d / "dot.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-keyout", str(key),
                    "-out", str(crt), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "x509", "-in", str(crt), "-pubkey", "-noout"], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, check=True,
                         capture_output=True).stdout
    import hashlib
    crt.chmod(0o644)
    return crt, key, hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def dot(tmp_path_factory):
    d = tmp_path_factory.mktemp("unbound-dot")
    crt, key, pin = make_cert(d)
    dot_port = free_udp_tcp_port()
    u = Unbound(d, free_udp_tcp_port(), dot=(dot_port, crt, key))
    u.dot_port, u.crt, u.pin = dot_port, crt, pin
    yield u
    u.stop()


@pytest.fixture
def dnsd(hostbin, tmp_path):
    started = []

    def start(extra, args=()):
        d = Dnsd(hostbin("dnsd"), tmp_path, free_udp_tcp_port(), None, extra, args=args)
        started.append(d)
        return d
    yield start
    for d in started:
        assert d.stop() == 0, d.logtext()


def dot_conf(port, pin=None, name=None):
    text = f"transport tls\ntls-port {port}\n"
    if pin:
        text += f"tls-pin {pin}\n"
    if name:
        text += f"tls-name {name}\n"
    return text


def established_to(port):
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    return len(out.strip().splitlines())


def test_right_pin_pipelined_on_one_connection(dnsd, dot):
    d = dnsd(dot_conf(dot.dot_port, pin=dot.pin))
    assert rrs(d.query("www.internet.test")) == [("www.internet.test", "A", "192.0.2.1")]
    assert dot.queries("www.internet.test") == 1
    # 30 different questions at once: all answered over the one connection
    names = [f"n{i}.internet.test" for i in range(30)]
    results = {}

    def ask(n):
        results[n] = d.query(n).rcode()
    threads = [threading.Thread(target=ask, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(rc == dns.rcode.NXDOMAIN for rc in results.values()), results
    assert len(results) == 30
    assert d.logtext().count("connected, server verified") == 1
    assert established_to(dot.dot_port) == 1
    # cached: no second query upstream
    assert rrs(d.query("WWW.internet.test"))[0][2] == "192.0.2.1"
    assert dot.queries("www.internet.test") == 1


def test_wrong_pin_fails_closed(dnsd, dot):
    d = dnsd(dot_conf(dot.dot_port, pin="ab" * 32))
    r = d.query("pinned-out.internet.test", timeout=20)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert "does not match the pin" in d.logtext()
    assert dot.queries("pinned-out.internet.test") == 0
    assert "connected, server verified" not in d.logtext()


def test_ca_and_name(dnsd, dot):
    # The CA from the configuration ([dns] ca-file) ...
    d = dnsd(dot_conf(dot.dot_port, name="localhost") + f"ca-file {dot.crt}\n")
    assert rrs(d.query("www.internet.test")) == [("www.internet.test", "A", "192.0.2.1")]
    # ... or from --tls-ca; either way the name must match.
    bad = dnsd(dot_conf(dot.dot_port, name="dns.wrong.example"), args=("--tls-ca", str(dot.crt)))
    r = bad.query("misnamed.internet.test", timeout=20)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert "server name" in bad.logtext()
    assert dot.queries("misnamed.internet.test") == 0


def test_name_and_pin_both_checked(dnsd, dot):
    d = dnsd(dot_conf(dot.dot_port, pin="cd" * 32, name="localhost"),
             args=("--tls-ca", str(dot.crt)))
    assert d.query("both.internet.test", timeout=20).rcode() == dns.rcode.SERVFAIL
    assert dot.queries("both.internet.test") == 0


def test_server_dropping_connection_gets_no_query(dnsd):
    """A listener that reads the ClientHello and hangs up: dnsd retries
    (over TLS again, never plain DNS) and answers SERVFAIL; nothing but
    TLS handshake records ever arrives."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    got = []
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            c.settimeout(5)
            got.append(c.recv(65536))
            c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    d = dnsd(dot_conf(port, pin="ab" * 32))
    r = d.query("dropped.internet.test", timeout=20)
    assert r.rcode() == dns.rcode.SERVFAIL
    stop.set()
    t.join(timeout=5)
    srv.close()
    assert got and all(b[:1] == b"\x16" for b in got), got   # TLS handshake records only
    assert not any(b"dropped" in b.lower() for b in got)


@pytest.mark.skipif(not __import__("os").environ.get("POSTERN_SOAK"),
                    reason="about 16 s: POSTERN_SOAK=1")
def test_silent_server_times_out(dnsd):
    """A listener that accepts and never answers the handshake: each try
    gives up after the handshake deadline; the client gets SERVFAIL."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    d = dnsd(dot_conf(srv.getsockname()[1], pin="ab" * 32))
    r = d.query("silent.internet.test", timeout=30)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert "timed out" in d.logtext()
    srv.close()


def test_reconnects_after_the_server_restarts(dnsd, dot, tmp_path):
    """The upstream goes away and comes back on the same port: the dead
    connection is noticed and the next queries open a new one."""
    port = free_udp_tcp_port()
    u = Unbound(tmp_path, free_udp_tcp_port(), dot=(port, dot.crt, dot.crt.with_name("dot.key")))
    d = dnsd(dot_conf(port, pin=dot.pin))
    try:
        assert rrs(d.query("www.internet.test")) == [("www.internet.test", "A", "192.0.2.1")]
        u.stop()
        u = Unbound(tmp_path, u.port, dot=(port, dot.crt, dot.crt.with_name("dot.key")))
        names = [f"again{i}.internet.test" for i in range(10)]
        results = {}

        def ask(n):
            results[n] = d.query(n, timeout=15).rcode()
        threads = [threading.Thread(target=ask, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(results.values()) == {dns.rcode.NXDOMAIN}, results
        assert d.logtext().count("connected, server verified") == 2
    finally:
        u.stop()
