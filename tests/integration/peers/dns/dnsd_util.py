"""Helpers for the dnsd integration tests (test_dns*.py): start dnsd on
loopback with a configuration, start unbound as its upstream, ask with
dnspython. Nothing here sends a packet outside 127.0.0.0/8."""
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import dns.message
import dns.query
import dns.rdatatype

PEERS = pathlib.Path(__file__).resolve().parent

BASE_CONF = """hostname postern
mail-domain example.com
internal-domain office.lan
[lan]
address 192.168.10.1/24
[dns]
upstream 127.0.0.1
rebind-allow lan-ok.test
host printer 192.168.10.20
host nas.office.lan 192.168.10.21 fd00::21
"""


class Dnsd:
    """dnsd on 127.0.0.1:port. Its files (configuration, wan-dns, leases)
    live in self.run, a directory the unprivileged user can read: started
    as root, dnsd drops to `nobody` (RUN_USER) after binding."""
    RUN_USER = "nobody"

    def __init__(self, bin_path, tmp, port, upstream_port, extra="", args=(), base=BASE_CONF,
                 listen=None):
        self.port = port
        self.run = pathlib.Path(tempfile.mkdtemp(prefix="dnsd-"))
        self.run.chmod(0o755)
        self.conf = self.run / "postern.conf"
        self.conf.write_text(base + extra)
        self.conf.chmod(0o644)
        self.wan_dns = self.run / "wan-dns"
        self.leases = self.run / "udhcpd.leases"
        self.log = open(tmp / "dnsd.log", "w+")
        r, w = os.pipe()
        cmd = [bin_path, "-f", "-c", str(self.conf), "--listen", listen or f"127.0.0.1:{port}",
               "--ready-fd", str(w), "--wan-dns", str(self.wan_dns),
               "--leases", str(self.leases), *args]
        if upstream_port:
            cmd += ["--upstream-port", str(upstream_port)]
        if os.geteuid() == 0:
            cmd += ["--user", self.RUN_USER]
        self.proc = subprocess.Popen(cmd, pass_fds=(w,), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        os.close(w)
        ready = os.read(r, 1)
        os.close(r)
        assert ready == b"\n", "dnsd did not start:\n" + self.logtext()

    def logtext(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.proc.terminate()
        rc = self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.run, ignore_errors=True)
        return rc

    def wait_log(self, text, timeout=5):
        """Waits until the log holds text (dnsd logs each file it re-reads)."""
        end = time.time() + timeout
        while time.time() < end:
            if text in self.logtext():
                return
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not logged:\n" + self.logtext())

    def query(self, name, rdtype="A", tcp=False, payload=None, want_dnssec=False, timeout=4):
        q = dns.message.make_query(name, rdtype, use_edns=payload is not None,
                                   payload=payload or 512)
        if tcp:
            return dns.query.tcp(q, "127.0.0.1", port=self.port, timeout=timeout)
        return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=timeout)


def rrs(msg, section="answer"):
    """[(name, type, text)] of a section."""
    out = []
    for rrset in getattr(msg, section):
        for rd in rrset:
            out.append((str(rrset.name).rstrip("."), dns.rdatatype.to_text(rrset.rdtype),
                        rd.to_text()))
    return out


def ttls(msg):
    return [rrset.ttl for rrset in msg.answer]


def wait_udp(port, timeout=10):
    """Waits until something answers DNS on 127.0.0.1:port."""
    q = dns.message.make_query("ready.internet.test", "A")
    end = time.time() + timeout
    while time.time() < end:
        try:
            dns.query.udp(q, "127.0.0.1", port=port, timeout=0.3)
            return
        except Exception:
            time.sleep(0.1)
    raise AssertionError(f"nothing answers on udp {port}")


class Unbound:
    """unbound on 127.0.0.1:port, knowing only tests/integration/peers/dns/
    unbound.conf.in's local data, plus big.internet.test (TXT records too
    large for 1232 bytes, so UDP answers come truncated)."""

    def __init__(self, tmp, port, dot=None):
        """dot: (port, cert, key) adds a DNS-over-TLS listener and logs
        every query it receives (self.queries())."""
        exe = shutil.which("unbound") or "/usr/sbin/unbound"
        self.dir = tmp
        big = "\n".join(f'  local-data: "big.internet.test. 300 IN TXT \\"{i:03d}' + "x" * 180 + '\\""'
                        for i in range(12))
        text = (PEERS / "unbound.conf.in").read_text()
        extra = ""
        if dot:
            extra = (f"  interface: 127.0.0.1@{dot[0]}\n  tls-port: {dot[0]}\n"
                     f'  tls-service-pem: "{dot[1]}"\n  tls-service-key: "{dot[2]}"\n')
        text = text.replace("@DIR@", str(tmp)).replace("@PORT@", str(port)).replace("@BIG@", big)
        text = text.replace("@DOT@", extra)
        conf = tmp / "unbound.conf"
        conf.write_text(text)
        self.logpath = tmp / "unbound.log"
        self.log = open(self.logpath, "w")
        self.proc = subprocess.Popen([exe, "-d", "-c", str(conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.port = port
        wait_udp(port)

    def queries(self, name):
        """How many queries for name (any case) unbound logged."""
        self.log.flush()
        text = self.logpath.read_text().lower()
        return text.count(" " + name.lower().rstrip(".") + ". ")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


def free_udp_tcp_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port")
