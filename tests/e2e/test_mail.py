"""The provisioned box runs its mail and DNS daemons, each without root:
submission with STARTTLS (587) and implicit TLS (465) under the box's own
CA, delivery into a local Maildir, IMAPS (993) to read it, and the internal
DNS zone over UDP and TCP. One boot, driven from the host through the
forwarded LAN ports."""
import imaplib
import pathlib
import re
import smtplib
import socket
import ssl
import subprocess
import time
from email.message import EmailMessage

import pytest

from box import Box, TOP

HOST = "mailbox"
FQDN = "mailbox.office.lan"
LAN = "192.168.77.1"
CONF = f"""# provisioned by tests/e2e/test_mail.py
hostname        {HOST}
mail-domain     example.com
internal-domain office.lan

[lan]
address         {LAN}/24

[smarthost]
host            smtp.provider.example
user            office@example.com
password-file   smart.pass

[account anna]
server          pop.provider.example
user            anna@example.com
password-file   anna.pass
deliver-to      alice
enabled         no
"""
PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-2"}


def connect(port, timeout=30):
    """A TCP connection to a forwarded LAN port on loopback."""
    return socket.create_connection(("127.0.0.1", port), timeout)


class BoxSMTP(smtplib.SMTP):
    """smtplib with the box's name as the TLS server name, over a port forward."""
    def __init__(self, fwd, **kw):
        self._fwd = fwd
        super().__init__(FQDN, 587, **kw)

    def _get_socket(self, host, port, timeout):
        return connect(self._fwd, timeout)


class BoxSMTPS(smtplib.SMTP_SSL):
    def __init__(self, fwd, **kw):
        self._fwd = fwd
        super().__init__(FQDN, 465, **kw)

    def _get_socket(self, host, port, timeout):
        return self.context.wrap_socket(connect(self._fwd, timeout), server_hostname=self._host)


class BoxIMAPS(imaplib.IMAP4_SSL):
    def __init__(self, fwd, ctx):
        self._fwd = fwd
        super().__init__(FQDN, 993, ssl_context=ctx, timeout=120)

    def _create_socket(self, timeout):
        return self.ssl_context.wrap_socket(connect(self._fwd, timeout), server_hostname=self.host)


def message(token, frm="alice@example.com", to="bob@example.com"):
    m = EmailMessage()
    m["From"] = frm
    m["To"] = to
    m["Subject"] = f"e2e {token}"
    m.set_content(f"Hello Bob,\nthe token is {token}.\n")
    return m


def dig(port, *args):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=5",
                          "+tries=2", *args], capture_output=True, text=True, timeout=60)
    return out.stdout.split()


def test_mail_services_end_to_end(tmp_path):
    conf = tmp_path / "provision.conf"
    conf.write_text(CONF)
    checker = TOP / "build" / "host" / "bin" / "postern"
    if checker.exists():
        r = subprocess.run([str(checker), "check", str(conf)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr

    timings = {}
    with Box(tmp_path, provision=conf) as box:
        timings["ready"] = box.wait_ready()
        t = time.monotonic()

        # --- the daemons run, each under its own unprivileged user ----------
        for s in ("smtpd", "imapd", "dnsd", "fetchd"):
            assert box.sh(f"sv status {s}").startswith("run:"), s
        ps = box.sh("ps -o user,comm")
        users = {}
        for line in ps.splitlines()[1:]:
            f = line.split()
            if len(f) == 2:
                users.setdefault(f[1], set()).add(f[0])
        for s in ("smtpd", "imapd", "fetchd", "dnsd"):
            assert users.get(s) == {s}, ps
        # ... with the groups they share: mail (101) for the store, auth (108)
        # for the users file; dnsd has neither.
        for s, groups in (("smtpd", "101 103 108"), ("imapd", "101 104 108"),
                          ("fetchd", "101 105 108"), ("dnsd", "102")):
            status = box.sh(f"cat /proc/$(pidof {s})/status")
            g = re.search(r"^Groups:\s*(.*)$", status, re.M).group(1).split()
            assert sorted(g) == groups.split(), (s, status)
        # dnsd's port window is closed again once it listens.
        assert box.sh("cat /proc/sys/net/ipv4/ip_unprivileged_port_start").strip() == "1024"

        # --- the TLS key is root's; the users file the mail daemons' only ---
        modes = box.sh("stat -c '%n %U:%G %a' /data/secrets/tls/server.key "
                       "/data/secrets/tls/ca.key /data/secrets/tls /data/mail /data/queue")
        assert "/data/secrets/tls/server.key root:root 600" in modes, modes
        assert "/data/secrets/tls/ca.key root:root 600" in modes, modes
        assert "/data/secrets/tls root:root 700" in modes, modes
        assert "/data/mail root:mail 2770" in modes, modes
        assert "/data/queue root:mail 2770" in modes, modes

        # --- provider passwords: each readable by its one service only -------
        box.sh("printf 'pop-Secret\\n' | postern secret set anna.pass")
        box.sh("printf 'smtp-Secret\\n' | postern secret set smart.pass")
        modes = box.sh("stat -c '%n %U:%G %a' /data/secrets /data/secrets/anna.pass "
                       "/data/secrets/smart.pass")
        assert "/data/secrets root:root 711" in modes, modes
        assert "/data/secrets/anna.pass fetchd:fetchd 600" in modes, modes
        assert "/data/secrets/smart.pass relayd:relayd 600" in modes, modes
        for secret, owner, value in (("anna.pass", "fetchd", "pop-Secret"),
                                     ("smart.pass", "relayd", "smtp-Secret")):
            for u in ("smtpd", "imapd", "fetchd", "relayd", "dnsd", "web"):
                out = box.sh(f"chpst -u {u} cat /data/secrets/{secret} 2>&1; echo rc=$?",
                             check=False)
                if u == owner:
                    assert value in out and "rc=0" in out, (u, secret, out)
                else:
                    assert value not in out and "rc=0" not in out, (u, secret, out)
        # A loosened file is put right by `postern secret fix` (run at boot).
        box.sh("chmod 644 /data/secrets/anna.pass && chown root /data/secrets/anna.pass")
        assert "repaired" in box.sh("postern secret fix")
        assert box.sh("stat -c '%U %a' /data/secrets/anna.pass").strip() == "fetchd 600"

        # --- two users; the password on stdin --------------------------------
        for name, pw in PASSWORDS.items():
            box.sh(f"printf '%s\\n' '{pw}' | postern user add {name}", timeout=180)
        assert "alice" in box.sh("postern user list")
        assert box.sh("stat -c '%U:%G %a' /data/etc/users").strip() == "root:auth 640"
        out = box.sh("chpst -u dnsd:dnsd cat /data/etc/users >/dev/null 2>&1; echo rc=$?",
                     check=False)
        assert "rc=0" not in out, "dnsd can read the users file"
        timings["users"] = time.monotonic() - t

        # --- the box's CA, from the console ---------------------------------
        pem = box.sh("cat /data/secrets/tls/ca.pem")
        m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)
        assert m, pem
        cafile = tmp_path / "box-ca.pem"
        cafile.write_text(m.group(0) + "\n")
        ctx = ssl.create_default_context(cafile=str(cafile))
        assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED

        # --- 587: no AUTH in clear; STARTTLS verified, AUTH, send to bob -----
        t = time.monotonic()
        with BoxSMTP(box.ports["SMTP"], timeout=120) as s:
            s.ehlo("client.office.lan")
            assert s.has_extn("starttls")
            assert not s.has_extn("auth"), "AUTH offered before TLS"
            s.starttls(context=ctx)
            s.ehlo("client.office.lan")
            assert s.has_extn("auth")
            s.login("alice", PASSWORDS["alice"])
            refused = s.send_message(message("via-587-starttls"))
            assert refused == {}
        timings["smtp-587"] = time.monotonic() - t

        # --- 465: implicit TLS ------------------------------------------------
        t = time.monotonic()
        with BoxSMTPS(box.ports["SMTPS"], context=ctx, timeout=120) as s:
            s.ehlo("client.office.lan")
            s.login("alice", PASSWORDS["alice"])
            assert s.send_message(message("via-465-implicit")) == {}
        timings["smtp-465"] = time.monotonic() - t

        # A certificate from another CA is refused by the client (sanity check
        # that verification is really on).
        with pytest.raises(ssl.SSLCertVerificationError):
            other = ssl.create_default_context()
            BoxSMTPS(box.ports["SMTPS"], context=other, timeout=60).close()

        # --- IMAPS as bob: both messages, with their bodies --------------------
        t = time.monotonic()
        im = BoxIMAPS(box.ports["IMAPS"], ctx)
        try:
            im.login("bob", PASSWORDS["bob"])
            typ, data = im.select("INBOX")
            assert typ == "OK" and int(data[0]) == 2, data
            typ, data = im.search(None, "ALL")
            bodies = []
            for num in data[0].split():
                typ, got = im.fetch(num, "(RFC822)")
                assert typ == "OK"
                bodies.append(got[0][1].decode())
            im.logout()
        finally:
            try:
                im.shutdown()
            except OSError:
                pass
        timings["imaps"] = time.monotonic() - t
        joined = "\n".join(bodies)
        for token in ("via-587-starttls", "via-465-implicit"):
            assert f"the token is {token}." in joined, joined
            assert f"Subject: e2e {token}" in joined
        assert all(b.startswith("Received:") for b in bodies), bodies
        assert "From: alice@example.com" in joined
        # Stored in bob's Maildir by smtpd, shared with imapd through the
        # group mail (it just read them), closed to everyone else.
        owners = box.sh("stat -c '%U:%G %a' /data/mail/bob/cur/* /data/mail/bob/new/* "
                        "2>/dev/null", check=False).split("\n")
        owners = [o for o in owners if o.strip()]
        assert owners and all(o == "smtpd:mail 660" for o in owners), owners

        # --- DNS: the box's own name in the internal zone, UDP and TCP ---------
        # TCP from the host, through the LAN port forward.
        t = time.monotonic()
        dport = box.ports["DNS"]
        assert dig(dport, "+tcp", FQDN, "A") == [LAN]
        assert dig(dport, "+tcp", "-x", LAN) == [FQDN + "."]
        assert dig(dport, "+tcp", "example.com", "MX") == ["10", FQDN + "."]
        # UDP to the LAN address, as an office client asks: from the box's
        # console (QEMU's LAN netdev is restrict=on, and slirp drops the
        # guest's UDP replies to a hostfwd'ed query, so the host never sees
        # them).
        out = box.sh(f"nslookup {FQDN} {LAN}")
        assert re.search(rf"Name:\s+{re.escape(FQDN)}\s+Address:\s+{re.escape(LAN)}\b", out), out
        # From the host over UDP: the query reaches dnsd and it answers (the
        # box's UDP counters), whether or not slirp delivers the reply.
        def udp_counters():
            line = box.sh("grep '^Udp: [0-9]' /proc/net/snmp").split()
            return int(line[1]), int(line[4])   # InDatagrams, OutDatagrams
        in0, out0 = udp_counters()
        got = dig(dport, "+tries=1", "+time=3", FQDN, "A")
        if got and not got[0].startswith(";;"):
            assert got == [LAN], got
        in1, out1 = udp_counters()
        assert in1 > in0 and out1 > out0, ((in0, out0), (in1, out1))
        timings["dns"] = time.monotonic() - t

        # Daemons log to syslog.
        log = box.sh("grep -E 'smtpd|imapd|dnsd|fetchd' /data/log/messages | tail -n 40")
        assert re.search(r"smtpd.*accepted", log), log
    print("timings:", {k: round(v, 1) for k, v in timings.items()})
