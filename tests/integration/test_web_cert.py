"""Installing an administrator's own TLS certificate from the web page
(/certs/install, web/cert.c -> admind cert-install, docs/web.md "Custom
certificate"). The box's TLS directory starts as a real local CA
(postern-certtool init); smtpd, imapd and a second webd run as services
under a stand-in for runit's `sv` that really restarts them, so the test
asks each running daemon, over TLS, which certificate it serves. Refusals
(key of another certificate, expired, garbage, weak key, oversized) must
change nothing: the TLS directory is compared byte for byte."""
import datetime
import http.client
import os
import pathlib
import re
import socket
import ssl
import subprocess
import time

import pytest

from webbox import HB, TOP, Client, WebBox
from peers.users import pbkdf2_hash

ADMIN_PW = "Admin-pw-1"
CONF = "hostname postern\ninternal-domain office.lan\nmail-domain example.com\n"
FQDN = "postern.office.lan"

FAKE_SV = """#!/bin/sh
cmd=$1 dir=$2
echo "$cmd $dir" >> {log}
# like runsv: the old process has exited (its ports are free) before the new one starts
stop() {{
	[ -f "$dir/pid" ] || return 0
	pid=$(cat "$dir/pid"); kill "$pid" 2>/dev/null
	n=0; while kill -0 "$pid" 2>/dev/null && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done
	rm -f "$dir/pid"
}}
case $cmd in
restart) stop; [ -f "$dir/run" ] && {{ setsid sh "$dir/run" >> "$dir/log" 2>&1 < /dev/null & echo $! > "$dir/pid"; }} ;;
esac
exit 0
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd, timeout=60)


def make_chain(d, name, key_args=("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")):
    """A company CA and a leaf for name, made with openssl: (chain, key) PEM."""
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "30", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Company CA",
            "-addext", "basicConstraints=critical,CA:TRUE", cwd=d)
    openssl("req", "-new", *key_args, "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
            "-subj", f"/CN={name}", cwd=d)
    (d / "ext").write_text(f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "20", "-extfile", "ext", "-out", "leaf.pem", cwd=d)
    return (d / "leaf.pem").read_text() + (d / "ca.pem").read_text(), (d / "leaf.key").read_text()


def expired_chain(d):
    """A self-signed certificate that expired yesterday (openssl 3.0 cannot
    date one in the past: python3-cryptography does)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FQDN)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(FQDN)]), False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def served_der(port, timeout=30):
    """The leaf certificate a running daemon serves on 127.0.0.1:port
    (implicit TLS); retried while the restarted daemon comes up."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    end = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                with ctx.wrap_socket(s) as t:
                    return t.getpeercert(binary_form=True)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def wait_served(port, der, timeout=30):
    end = time.monotonic() + timeout
    while (got := served_der(port)) != der:
        assert time.monotonic() < end, f"port {port} still serves another certificate"
        time.sleep(0.1)
    return got


def leaf_der(chain_pem):
    return ssl.PEM_cert_to_DER_cert(chain_pem.split("-----END CERTIFICATE-----")[0] +
                                    "-----END CERTIFICATE-----\n")


class CertBox:
    def __init__(self, free_port, tmp):
        self.box = box = WebBox(free_port, conf=CONF,
                                users=f"user admin admin {pbkdf2_hash(ADMIN_PW)}\n")
        self.tls = box.root / "secrets/tls"
        for f in self.tls.iterdir():
            f.unlink()
        subprocess.run([str(HB / "bin/postern-certtool"), "init", str(self.tls), "--name",
                        "localhost", "--ip", "127.0.0.1"], check=True, capture_output=True)
        self.tmp = tmp
        box.sv.write_text(FAKE_SV.format(log=box.sv_log))
        self.ports = {"smtpd": free_port(), "imapd": free_port(), "webd": free_port()}
        self.services()
        renew = box.root / "renew"
        renew.write_text(f"#!/bin/sh\nexec {HB}/bin/postern-certtool renew {self.tls} "
                         "--name localhost --ip 127.0.0.1\n")
        renew.chmod(0o755)
        box.start(["--certtool", str(HB / "bin/postern-certtool"), "--cert-renew", str(renew)])
        for s in self.ports:
            subprocess.run([str(box.sv), "restart", str(box.root / "service" / s)], check=True)
        self.client = Client(box)
        self.client.ctx = ssl.create_default_context(cafile=str(self.tls / "ca.pem"))
        r, page = self.client.login("admin", ADMIN_PW)
        assert r.status == 303, page

    def services(self):
        b, t, p = self.box, self.tls, self.ports
        tls = f"--cert {t}/server.pem --key {t}/server.key"
        (b.root / "mail").chmod(0o777)
        (b.root / "queue").chmod(0o777)
        runs = {
            "smtpd": f"exec {HB}/bin/smtpd -f --config {b.conf} --users {b.users} --mail {b.root}/mail "
                     f"--queue {b.root}/queue --throttle {b.root}/run/throttle {tls} "
                     f"--submission 127.0.0.1:{self.free(p)} --smtps 127.0.0.1:{p['smtpd']} "
                     "--user nobody",
            "imapd": f"exec {HB}/bin/imapd -f --users {b.users} --mail {b.root}/mail "
                     f"--throttle {b.root}/run/throttle {tls} --imap 127.0.0.1:{self.free(p)} "
                     f"--imaps 127.0.0.1:{p['imapd']} --user nobody",
            "webd": f"exec {HB}/bin/webd {tls} --https 127.0.0.1:{p['webd']} "
                    f"--http 127.0.0.1:{self.free(p)} --user nobody --cgi {HB}/web/admin.cgi "
                    f"--www {TOP}/web/www",
        }
        for name, cmd in runs.items():
            d = b.root / "service" / name
            (d / "supervise").mkdir(parents=True, exist_ok=True)
            (d / "run").write_text("#!/bin/sh\n" + cmd + "\n")

    def free(self, ports):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def snapshot(self):
        return {f.name: f.read_bytes() for f in sorted(self.tls.iterdir()) if f.is_file()}

    def install(self, chain, key):
        return self.client.post("/certs/install", {"op": "install", "chain": chain, "key": key})

    def close(self):
        self.box.stop()
        for s in self.ports:
            pid = self.box.root / "service" / s / "pid"
            if pid.exists():
                subprocess.run(["kill", pid.read_text().strip()], check=False)


@pytest.fixture
def cb(free_port, tmp_path):
    if not (HB / "bin/postern-certtool").exists():
        pytest.skip("make host first")
    b = CertBox(free_port, tmp_path)
    yield b
    b.close()


def test_good_certificate_is_served_by_every_daemon(cb):
    old = served_der(cb.ports["smtpd"])
    chain, key = make_chain(cb.tmp / "good", FQDN)
    new = leaf_der(chain)
    assert old != new
    # pasted as a browser sends a text area: CRLF line breaks
    r, page = cb.install(chain.replace("\n", "\r\n"), key.replace("\n", "\r\n"))
    assert r.status == 200 and "Installed." in page and "Warning" not in page, page
    assert (cb.tls / "server.pem").read_text() == chain
    st = os.stat(cb.tls / "server.key")
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0
    assert (cb.tls / "admin-installed").exists()
    for s in ("smtpd", "imapd", "webd"):
        assert f"restart {cb.box.root}/service/{s}" in cb.box.sv_log.read_text()
        wait_served(cb.ports[s], new)
    _, page = cb.client.get("/certs/install")
    assert "installed by an administrator" in page and "Return to the box" in page

    # "Return to the box's own certificate": reissued from the local CA
    r, page = cb.client.post("/certs/install", {"op": "revert", "x": "1"})
    assert r.status == 303, page
    assert not (cb.tls / "admin-installed").exists()
    own = leaf_der((cb.tls / "server.pem").read_text())
    assert own != new
    for s in ("smtpd", "imapd", "webd"):
        wait_served(cb.ports[s], own)
    ctx = ssl.create_default_context(cafile=str(cb.tls / "ca.pem"))
    with socket.create_connection(("127.0.0.1", cb.ports["imapd"]), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost"):
            pass   # verifies against the box's CA again


def test_name_mismatch_installs_with_a_warning(cb):
    chain, key = make_chain(cb.tmp / "other", "www.example.com")
    r, page = cb.install(chain, key)
    assert r.status == 200 and "Installed." in page
    assert "Warning: the certificate does not name this box (postern.office.lan)" in page, page
    wait_served(cb.ports["imapd"], leaf_der(chain))


def refused(cb, chain, key, field, text):
    before, log = cb.snapshot(), cb.box.sv_log.read_text()
    r, page = cb.install(chain, key)
    assert r.status in (400, 413), page
    if field:
        m = re.search(rf'id="f-{field}-err"[^>]*>([^<]*)<', page)
        assert m and text in m.group(1), page
    assert cb.snapshot() == before            # nothing in the TLS directory changed
    assert "restart" not in cb.box.sv_log.read_text()[len(log):]
    assert "Installed." not in page
    return page


def test_refusals_change_nothing(cb):
    chain, _ = make_chain(cb.tmp / "a", FQDN)
    _, other_key = make_chain(cb.tmp / "b", FQDN)
    refused(cb, chain, other_key, "key", "is not the key of the certificate")
    chain_x, key_x = expired_chain(cb.tmp)
    refused(cb, chain_x, key_x, "chain", "has expired")
    refused(cb, "hello, this is not a certificate", "nor a key", "chain", "not a PEM certificate chain")
    weak_chain, weak_key = make_chain(cb.tmp / "weak", FQDN, ("-newkey", "rsa:1024"))
    refused(cb, weak_chain, weak_key, "key", "at least 2048")
    refused(cb, chain + "x" * 40000, "", "chain", "too large")
    # over webd's 64 KiB body limit: webd answers 413 and closes without
    # reading the rest (the client may then see the reset first)
    before = cb.snapshot()
    try:
        r, _ = cb.install(chain + "x" * 70000, "")
        assert r.status == 413
    except (http.client.HTTPException, OSError):
        pass
    assert cb.snapshot() == before


def test_field_errors_are_marked(cb):
    page = refused(cb, "garbage", "garbage", "chain", "not a PEM")
    assert 'aria-invalid="true"' in page
    assert "garbage" in page                   # the chain is shown again ...
    assert page.count("garbage") == 1          # ... the key never is
