"""TLS (src/lib/tls.c) and the local CA (src/lib/localca.c) against real
peers on loopback, through the host-built tls-probe and postern-certtool.

- our server (tls-probe server) with openssl s_client, curl and Python's
  ssl, using certificates from our local CA and the CA file alone; old
  protocol versions and non-AEAD / non-ECDHE suites are refused;
- our client (tls-probe client) against openssl s_server: right pin, wrong
  pin, right CA, wrong host name, expired certificate, unknown CA. Only the
  right ones connect; on a wrong one the secret never reaches the server
  and the error names the server's SPKI fingerprint.
"""
import os
import pathlib
import re
import select
import socket
import ssl
import subprocess
import time

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
HB = pathlib.Path(os.environ.get("HB", TOP / "build" / "host"))
NAMES = ["box", "mail.office.lan", "imap.office.lan", "smtp.office.lan"]
SECRET = "the-secret-password-xyzzy"
MOZILLA = "/etc/ssl/certs/ca-certificates.crt"


def binpath(name):
    p = HB / "bin" / name
    assert p.exists(), f"{p} is missing: run `make host`"
    return str(p)


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=60, **kw)


def openssl_pin(cert):
    """SHA-256 of the SPKI, the way an administrator computes it."""
    pub = run("openssl", "x509", "-in", cert, "-pubkey", "-noout").stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"],
                         input=pub.encode(), capture_output=True, check=True).stdout
    import hashlib
    return hashlib.sha256(der).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_openssl_pki(d):
    """A test CA, a server.test certificate (EC), an RSA one, an expired one
    (dates in the past, via openssl ca), and an unrelated CA."""
    sh = lambda *a: subprocess.run([str(x) for x in a], check=True, capture_output=True)
    ext = d / "ext.cnf"
    ext.write_text("[srv]\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectAltName=DNS:server.test,IP:127.0.0.1\n")
    for ca in ("ca", "otherca"):
        sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", d / f"{ca}.key")
        sh("openssl", "req", "-x509", "-new", "-key", d / f"{ca}.key", "-subj", f"/CN={ca}",
           "-days", "3650", "-out", d / f"{ca}.pem")
    sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", d / "srv.key")
    sh("openssl", "genrsa", "-out", d / "rsa.key", "2048")
    for k in ("srv", "rsa"):
        sh("openssl", "req", "-new", "-key", d / f"{k}.key", "-subj", "/CN=server.test",
           "-out", d / f"{k}.csr")
        sh("openssl", "x509", "-req", "-in", d / f"{k}.csr", "-CA", d / "ca.pem", "-CAkey",
           d / "ca.key", "-CAcreateserial", "-days", "365", "-extfile", ext,
           "-extensions", "srv", "-out", d / f"{k}.pem")
    # Expired: same key as srv, dates in 2020.
    (d / "newcerts").mkdir()
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    cnf = d / "ca.cnf"
    cnf.write_text(f"[ca]\ndefault_ca=c\n[c]\ndir={d}\ndatabase={d}/index.txt\n"
                   f"new_certs_dir={d}/newcerts\nserial={d}/serial\ndefault_md=sha256\n"
                   "policy=p\nunique_subject=no\n[p]\ncommonName=supplied\n"
                   + ext.read_text())
    sh("openssl", "ca", "-batch", "-config", cnf, "-cert", d / "ca.pem", "-keyfile",
       d / "ca.key", "-in", d / "srv.csr", "-out", d / "expired.pem", "-notext",
       "-startdate", "20200101000000Z", "-enddate", "20210101000000Z", "-extensions", "srv")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_openssl_pki(d)
    local = d / "local"
    r = run(binpath("postern-certtool"), "init", local, *sum((["--name", n] for n in NAMES), []),
            "--ip", "127.0.0.1", "--ip", "192.168.77.1")
    assert r.returncode == 0, r.stderr
    return d


class Probe:
    """tls-probe server on a free port, stopped at the end."""

    def __init__(self, cert, key):
        self.proc = subprocess.Popen([binpath("tls-probe"), "server", "--cert", str(cert),
                                      "--key", str(key), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening (\d+)", line)
        assert m, f"no readiness line: {line!r} {self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.port = int(m.group(1))

    def stop(self):
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=10)
        return out, err


@pytest.fixture
def local_server(pki):
    p = Probe(pki / "local" / "server.pem", pki / "local" / "server.key")
    yield p
    p.stop()


# ---- the local CA -----------------------------------------------------------

def test_local_ca_passes_openssl_verify(pki):
    local = pki / "local"
    r = run("openssl", "verify", "-CAfile", local / "ca.pem", local / "server.pem")
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    text = run("openssl", "x509", "-in", local / "server.pem", "-noout", "-text").stdout
    for n in NAMES:
        assert f"DNS:{n}" in text
    assert "IP Address:192.168.77.1" in text and "IP Address:127.0.0.1" in text
    assert "TLS Web Server Authentication" in text and "CA:FALSE" in text
    ca = run("openssl", "x509", "-in", local / "ca.pem", "-noout", "-text").stdout
    assert "CA:TRUE" in ca and "Certificate Sign" in ca
    assert (local / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (local / "server.key").stat().st_mode & 0o777 == 0o600
    run("openssl", "ec", "-in", local / "server.key", "-check", "-noout").check_returncode()


def test_certtool_pin_matches_openssl(pki):
    for cert in (pki / "local" / "server.pem", pki / "srv.pem", pki / "rsa.pem"):
        r = run(binpath("postern-certtool"), "pin", cert)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == openssl_pin(cert)


def test_certtool_renew(tmp_path):
    d = tmp_path / "ca"
    tool = binpath("postern-certtool")
    assert run(tool, "init", d, "--name", "box", "--ip", "10.0.0.1").returncode == 0
    ca_before = (d / "ca.pem").read_bytes()
    server_before = (d / "server.pem").read_bytes()
    r = run(tool, "renew", d)
    assert r.returncode == 0 and r.stdout.strip() == "valid"
    # Renewal is due 30 days before the 365-day certificate expires: not
    # 35 days before, yes 25 days before.
    r = run(tool, "renew", d, "--now", int(time.time()) + 330 * 86400)
    assert r.returncode == 0 and r.stdout.strip() == "valid", r.stdout + r.stderr
    assert (d / "server.pem").read_bytes() == server_before
    later = int(time.time()) + 340 * 86400
    r = run(tool, "renew", d, "--now", later)
    assert r.returncode == 0 and r.stdout.strip() == "renewed", r.stderr
    assert (d / "ca.pem").read_bytes() == ca_before
    text = run("openssl", "x509", "-in", d / "server.pem", "-noout", "-text").stdout
    assert "DNS:box" in text and "IP Address:10.0.0.1" in text
    # Issued "340 days from now": valid then, not yet now.
    assert run("openssl", "verify", "-attime", later + 60, "-CAfile", d / "ca.pem",
               d / "server.pem").returncode == 0
    assert run("openssl", "verify", "-CAfile", d / "ca.pem", d / "server.pem").returncode != 0


def test_certtool_bad_input(tmp_path):
    tool = binpath("postern-certtool")
    r = run(tool, "init", tmp_path / "x", "--name", "bad name!")
    assert r.returncode == 100 and "bad name!" in r.stderr
    r = run(tool, "pin", tmp_path / "missing.pem")
    assert r.returncode == 100 and "missing.pem" in r.stderr
    assert run(tool, "renew", tmp_path / "nothing").returncode == 111


# ---- our server, real clients ------------------------------------------------

def test_server_with_openssl_s_client(pki, local_server):
    r = run("openssl", "s_client", "-connect", f"127.0.0.1:{local_server.port}",
            "-CAfile", pki / "local" / "ca.pem", "-verify_hostname", "mail.office.lan",
            "-verify_return_error", "-brief", "-ign_eof",
            input="ping over tls\nGET / HTTP/1.0\n")
    out = r.stdout + r.stderr
    assert "Verification: OK" in out, out
    assert "Protocol version: TLSv1.2" in out
    assert re.search(r"Ciphersuite: ECDHE-ECDSA-(AES\d+-GCM|CHACHA20-POLY1305)", out), out
    # The echo, then the HTTP answer after which the server closes.
    assert "ping over tls" in r.stdout and "hello from tls-probe" in r.stdout, r.stdout


def test_server_with_curl(pki, local_server):
    ca = pki / "local" / "ca.pem"
    r = run("curl", "-sS", "--max-time", "10", "--cacert", ca,
            f"https://127.0.0.1:{local_server.port}/")
    assert r.returncode == 0 and r.stdout == "hello from tls-probe\n", r.stderr
    r = run("curl", "-sS", "--max-time", "10", "--cacert", ca, "--resolve",
            f"imap.office.lan:{local_server.port}:127.0.0.1",
            f"https://imap.office.lan:{local_server.port}/")
    assert r.returncode == 0 and r.stdout == "hello from tls-probe\n", r.stderr
    # A name not in the certificate is refused by curl.
    r = run("curl", "-sS", "--max-time", "10", "--cacert", ca, "--resolve",
            f"other.office.lan:{local_server.port}:127.0.0.1",
            f"https://other.office.lan:{local_server.port}/")
    assert r.returncode != 0


def python_echo(port, cafile, name, text="hello from python"):
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            s.sendall(text.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
            return s.version(), s.cipher()[0], data.decode()


def test_server_with_python_ssl(pki, local_server):
    for name in ("mail.office.lan", "127.0.0.1"):
        version, cipher, echo = python_echo(local_server.port, pki / "local" / "ca.pem", name)
        assert version == "TLSv1.2"
        assert cipher.startswith("ECDHE-ECDSA-") and ("GCM" in cipher or "CHACHA20" in cipher)
        assert echo == "hello from python\n"
    with pytest.raises(ssl.SSLCertVerificationError):
        python_echo(local_server.port, pki / "local" / "ca.pem", "nothere.office.lan")


def test_server_many_connections_at_once(pki, local_server):
    """One poll loop serves several clients whose handshakes interleave."""
    ctx = ssl.create_default_context(cafile=str(pki / "local" / "ca.pem"))
    socks = [socket.create_connection(("127.0.0.1", local_server.port), timeout=10)
             for _ in range(5)]
    tls = [ctx.wrap_socket(s, server_hostname="box") for s in socks]
    for i, s in enumerate(tls):
        s.sendall(f"client {i}\n".encode())
    for i, s in enumerate(tls):
        assert s.recv(100) == f"client {i}\n".encode()
        s.close()


def test_server_rsa_certificate(pki):
    p = Probe(pki / "rsa.pem", pki / "rsa.key")
    try:
        version, cipher, echo = python_echo(p.port, pki / "ca.pem", "server.test")
        assert version == "TLSv1.2" and cipher.startswith("ECDHE-RSA-")
        assert ("GCM" in cipher or "CHACHA20" in cipher) and echo == "hello from python\n"
    finally:
        p.stop()


@pytest.mark.parametrize("args", [
    ["-tls1_1"],
    ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"],
    ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA"],
    ["-tls1_2", "-cipher", "AES128-GCM-SHA256"],
], ids=["tls1.1", "cbc-sha256", "cbc-sha1", "no-ecdhe"])
def test_server_refuses_weak(pki, local_server, args):
    r = run("openssl", "s_client", "-connect", f"127.0.0.1:{local_server.port}",
            "-CAfile", pki / "local" / "ca.pem", "-brief", *args, input="x\n")
    assert "CONNECTION ESTABLISHED" not in r.stdout + r.stderr


def test_server_handshake_timeout(pki):
    """A client that connects and says nothing is not waited for forever:
    the server keeps serving others meanwhile, and closes the silent one
    when its handshake deadline (tls-probe: 10 s) passes."""
    p = Probe(pki / "local" / "server.pem", pki / "local" / "server.key")
    try:
        idle = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        _, _, echo = python_echo(p.port, pki / "local" / "ca.pem", "box")
        assert echo == "hello from python\n"
        idle.settimeout(120)            # a guard only: the server closes it
        assert idle.recv(1) == b"", "the server sent something to a silent client"
        idle.close()
    finally:
        _, err = p.stop()
    assert "handshake timeout" in err, err


# ---- our client, openssl s_server ------------------------------------------

class SServer:
    """openssl s_server for one connection; records what it receives."""

    def __init__(self, tmp, cert, key):
        self.port = free_port()
        self.out = open(tmp / f"s_server.{self.port}.out", "w+")
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", str(cert),
             "-key", str(key), "-naccept", "1"],
            stdin=subprocess.PIPE, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            self.out.seek(0)
            if "ACCEPT" in self.out.read():
                return
            time.sleep(0.05)
        raise AssertionError("s_server did not start")

    def finish(self):
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        self.out.seek(0)
        text = self.out.read()
        self.out.close()
        return text


def probe_client(port, *verify):
    return run(binpath("tls-probe"), "client", "--host", "127.0.0.1", "--port", port,
               "--send", SECRET, "--wait-ms", "300", *verify)


CASES = {
    # name: (cert, key, verification args (filled in with pki), should connect, error)
    "right-pin": ("srv.pem", "srv.key", lambda d: ["--pin", openssl_pin(d / "srv.pem")], True, None),
    "wrong-pin": ("srv.pem", "srv.key", lambda d: ["--pin", openssl_pin(d / "rsa.pem")], False,
                  "does not match the pin"),
    "right-ca": ("srv.pem", "srv.key", lambda d: ["--ca", d / "ca.pem", "--name", "server.test"],
                 True, None),
    "rsa-right-ca": ("rsa.pem", "rsa.key", lambda d: ["--ca", d / "ca.pem", "--name", "server.test"],
                     True, None),
    "wrong-name": ("srv.pem", "srv.key", lambda d: ["--ca", d / "ca.pem", "--name", "mail.example.com"],
                   False, "does not match the server name"),
    "expired": ("expired.pem", "srv.key", lambda d: ["--ca", d / "ca.pem", "--name", "server.test"],
                False, "expired"),
    "unknown-ca": ("srv.pem", "srv.key", lambda d: ["--ca", d / "otherca.pem", "--name", "server.test"],
                   False, "not trusted"),
    # The real Mozilla bundle loads, and does not trust our test CA.
    "mozilla-bundle": ("srv.pem", "srv.key", lambda d: ["--ca", MOZILLA, "--name", "server.test"],
                       False, "not trusted"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_client_against_s_server(pki, tmp_path, case):
    cert, key, verify, ok, error = CASES[case]
    if case == "mozilla-bundle" and not os.path.exists(MOZILLA):
        pytest.skip("no CA bundle (apt-get install ca-certificates)")
    server = SServer(tmp_path, pki / cert, pki / key)
    r = probe_client(server.port, *verify(pki))
    received = server.finish()
    if ok:
        assert r.returncode == 0, r.stderr
        assert SECRET in received, received
    else:
        assert r.returncode == 100, (r.returncode, r.stdout, r.stderr)
        assert error in r.stderr, r.stderr
        # The error names the key the server presented.
        assert f"SPKI fingerprint: {openssl_pin(pki / cert)}" in r.stderr, r.stderr
        assert SECRET not in received, received
        assert SECRET not in r.stdout


def test_client_handshake_timeout(tmp_path):
    """A server that accepts and never answers: the client gives up."""
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        port = ls.getsockname()[1]
        pin = "00" * 32
        t0 = time.time()
        p = subprocess.Popen([binpath("tls-probe"), "client", "--host", "127.0.0.1",
                              "--port", str(port), "--pin", pin, "--send", SECRET],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        conn, _ = ls.accept()
        data = b""
        while p.poll() is None and time.time() - t0 < 30:
            if select.select([conn], [], [], 0.2)[0]:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        out, err = p.communicate(timeout=30)
        conn.close()
    assert p.returncode == 111, err
    assert "timeout during the TLS handshake" in err
    assert SECRET.encode() not in data
