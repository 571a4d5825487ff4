"""postern-certtool install / renew / expiry (src/postern-certtool/certtool.c):
an administrator's own certificate replaces the box's, automatic renewal
leaves it alone, bad input is refused before anything changes, and
`install --revert` gives the box back its own certificate from the local CA.
Test certificates come from openssl (a small CA made with `openssl ca`, so
the dates can be set: expired, not yet valid)."""
import os
import pathlib
import stat
import subprocess

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
HB = pathlib.Path(os.environ.get("HB", TOP / "build" / "host"))
BOX = ["--name", "box", "--name", "box.office.lan", "--ip", "192.168.77.1"]


def tool(*args):
    p = HB / "bin" / "postern-certtool"
    assert p.exists(), f"{p} is missing: run `make host`"
    return subprocess.run([str(p), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def sh(*args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True)


def make_admin_pki(d):
    """An openssl CA; EC and RSA server certificates (valid now, chain =
    leaf + CA); one expired and one not yet valid; an unrelated key."""
    ext = d / "ext.cnf"
    ext.write_text("[srv]\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:mail.example.com\n")
    sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", d / "ca.key")
    sh("openssl", "req", "-x509", "-new", "-key", d / "ca.key", "-subj", "/CN=Admin CA",
       "-days", "3650", "-out", d / "ca.pem")
    sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", d / "srv.key")
    sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", d / "other.key")
    sh("openssl", "genrsa", "-out", d / "rsa.key", "2048")
    (d / "newcerts").mkdir()
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    cnf = d / "ca.cnf"
    cnf.write_text(f"[ca]\ndefault_ca=c\n[c]\ndir={d}\ndatabase={d}/index.txt\n"
                   f"new_certs_dir={d}/newcerts\nserial={d}/serial\ndefault_md=sha256\n"
                   "policy=p\nunique_subject=no\n[p]\ncommonName=supplied\n"
                   + ext.read_text())

    def issue(key, out, *dates):
        sh("openssl", "req", "-new", "-key", d / key, "-subj", "/CN=mail.example.com",
           "-out", d / "req.csr")
        sh("openssl", "ca", "-batch", "-config", cnf, "-cert", d / "ca.pem", "-keyfile",
           d / "ca.key", "-in", d / "req.csr", "-out", d / out, "-notext",
           "-extensions", "srv", *dates)

    issue("srv.key", "srv.pem", "-days", "365")
    issue("rsa.key", "rsa.pem", "-days", "365")
    issue("srv.key", "expired.pem", "-startdate", "20200101000000Z", "-enddate", "20210101000000Z")
    issue("srv.key", "future.pem", "-startdate", "20991231000000Z", "-enddate", "21000101000000Z")
    for leaf in ("srv", "rsa"):
        (d / f"{leaf}-chain.pem").write_bytes((d / f"{leaf}.pem").read_bytes()
                                              + (d / "ca.pem").read_bytes())
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"
                                   "-----END CERTIFICATE-----\n")
    (d / "text.pem").write_text("hello, this is not PEM\n")


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    d = tmp_path_factory.mktemp("admin")
    make_admin_pki(d)
    return d


@pytest.fixture
def box(tmp_path):
    """A fresh local CA directory, as firstboot-certs makes it."""
    d = tmp_path / "tls"
    r = tool("init", d, *BOX)
    assert r.returncode == 0, r.stderr
    return d


def snapshot(d):
    """Every file of the directory: name -> (bytes, mode)."""
    return {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(d.iterdir())}


def verifies(d):
    return subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.pem"),
                           str(d / "server.pem")], capture_output=True).returncode == 0


def test_init_makes_ca_and_server_cert(box):
    assert {"ca.pem", "ca.key", "server.pem", "server.key"} <= set(os.listdir(box))
    assert verifies(box)
    assert stat.S_IMODE((box / "server.key").stat().st_mode) == 0o600
    r = tool("renew", box)
    assert (r.returncode, r.stdout) == (0, "valid\n"), r.stderr


@pytest.mark.parametrize("leaf", ["srv", "rsa"])
def test_install_then_renew_leaves_it(box, admin, leaf):
    r = tool("install", box, admin / f"{leaf}-chain.pem", admin / f"{leaf}.key")
    assert (r.returncode, r.stdout) == (0, "installed\n"), r.stderr
    assert (box / "server.pem").read_bytes() == (admin / f"{leaf}-chain.pem").read_bytes()
    assert (box / "server.key").read_bytes() == (admin / f"{leaf}.key").read_bytes()
    assert stat.S_IMODE((box / "server.key").stat().st_mode) == 0o600
    assert (box / "admin-installed").exists()
    before = snapshot(box)
    # Not ours, not even forced, not even when it would be due.
    for extra in ([], ["--force"], ["--now", 4_000_000_000], BOX):
        r = tool("renew", box, *extra)
        assert (r.returncode, r.stdout) == (0, "admin-installed\n"), (extra, r.stderr)
    assert snapshot(box) == before
    r = tool("init", box, *BOX)
    assert r.returncode == 100 and "install --revert" in r.stderr
    assert snapshot(box) == before


BAD = {
    "mismatched key": ("srv-chain.pem", "other.key", "other.key is not the key of the "
                       "certificate in "),
    "rsa key, ec cert": ("srv-chain.pem", "rsa.key", "rsa.key is not the key of the "
                         "certificate in "),
    "expired": ("expired.pem", "srv.key", "expired.pem: the certificate has expired: "
                "valid until 2021-01-01T00:00:00Z"),
    "not yet valid": ("future.pem", "srv.key", "future.pem: the certificate is not valid yet: "
                      "valid from 2099-12-31T00:00:00Z"),
    "garbage cert": ("garbage.pem", "srv.key", "garbage.pem: not a PEM certificate chain"),
    "not pem cert": ("text.pem", "srv.key", "text.pem: not a PEM certificate chain: "
                     "no CERTIFICATE found"),
    "not pem key": ("srv.pem", "text.pem", "text.pem: not a PEM private key: "
                    "no PRIVATE KEY found"),
    "cert for key": ("srv.pem", "srv.pem", "srv.pem: not a PEM private key"),
    "missing cert": ("missing.pem", "srv.key", "cannot read the certificate: "),
    "missing key": ("srv.pem", "missing.key", "cannot read the private key: "),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_install_refuses_bad_input(box, admin, case):
    cert, key, message = BAD[case]
    before = snapshot(box)
    r = tool("install", box, admin / cert, admin / key)
    assert r.returncode == 100, r
    assert message in r.stderr, r.stderr
    assert r.stdout == ""
    if case.startswith("missing"):
        assert "No such file or directory" in r.stderr
    if "key," in case or case.startswith("mismatched"):
        assert "srv-chain.pem (the private key does not belong" in r.stderr
    assert snapshot(box) == before
    assert tool("renew", box).stdout == "valid\n"


def test_install_over_admin_cert_refused_keeps_it(box, admin):
    assert tool("install", box, admin / "srv-chain.pem", admin / "srv.key").returncode == 0
    before = snapshot(box)
    r = tool("install", box, admin / "expired.pem", admin / "srv.key")
    assert r.returncode == 100 and "has expired" in r.stderr
    assert snapshot(box) == before


def test_revert_then_renew_reissues_from_local_ca(box, admin):
    ca = (box / "ca.pem").read_bytes()
    assert tool("install", box, admin / "srv-chain.pem", admin / "srv.key").returncode == 0
    assert not verifies(box)
    r = tool("install", "--revert", box)
    assert (r.returncode, r.stdout) == (0, "reverted\n"), r.stderr
    assert not (box / "admin-installed").exists()
    # The administrator's names are not the box's: renew wants them.
    r = tool("renew", box)
    assert r.returncode == 100 and "not issued by the local CA" in r.stderr
    r = tool("renew", box, *BOX)
    assert (r.returncode, r.stdout) == (0, "renewed\n"), r.stderr
    assert verifies(box)
    assert (box / "ca.pem").read_bytes() == ca
    assert stat.S_IMODE((box / "server.key").stat().st_mode) == 0o600
    text = subprocess.run(["openssl", "x509", "-in", str(box / "server.pem"), "-noout",
                           "-text"], capture_output=True, text=True).stdout
    assert "DNS:box.office.lan" in text and "mail.example.com" not in text
    assert tool("renew", box, *BOX).stdout == "valid\n"
    r = tool("install", "--revert", box)
    assert (r.returncode, r.stdout) == (0, "nothing to revert\n")


def test_expiry(box, admin):
    end = int(subprocess.run(["date", "-d", "2021-01-01T00:00:00Z", "+%s"],
                             capture_output=True, text=True, check=True).stdout)
    r = tool("expiry", admin / "expired.pem", "--now", end - 86400 * 10 - 1)
    assert (r.returncode, r.stdout) == (0, "10 2021-01-01T00:00:00Z\n")
    r = tool("expiry", admin / "expired.pem", "--now", end + 1)
    assert r.stdout == "-1 2021-01-01T00:00:00Z\n"
    r = tool("expiry", box / "server.pem")
    assert r.returncode == 0 and int(r.stdout.split()[0]) in (364, 365)
    r = tool("expiry", admin / "garbage.pem")
    assert r.returncode == 100 and "garbage.pem" in r.stderr


def test_usage(box):
    for args in (["install", box], ["install", "--revert"], ["install", box, "a", "b", "--force"],
                 ["expiry", box / "server.pem", "--name", "x"]):
        r = tool(*args)
        assert r.returncode == 100 and "usage:" in r.stderr, args
