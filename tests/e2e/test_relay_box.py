"""The booted box relays outbound mail (issue 5): a real Postfix on the
host's loopback plays the provider's smart host (STARTTLS + AUTH), reached
from the guest's WAN through a QEMU guestfwd (10.0.2.100:587 -> the host's
port). A message submitted on the box's port 587 (a loopback port forward
from the host) by an office user for an outside recipient is queued by smtpd,
relayed by relayd over TLS verified by the pinned key, with AUTH, and
arrives at Postfix with the masqueraded envelope sender and the body
intact; the queue ends empty."""
import re
import smtplib
import socket
import ssl
import sys
import time
from email.message import EmailMessage

from box import Box, TOP

sys.path.insert(0, str(TOP / "tests" / "integration" / "peers" / "postfix"))
from postfix import Postfix, RelayCA  # noqa: E402

HOST = "relaybox"
FQDN = "relaybox.office.lan"
LAN = "192.168.79.1"
SMARTHOST = "10.0.2.100"         # on QEMU's user-network WAN (10.0.2.0/24)
MASQ = "corp.example"
PASSWORD = "alice-Secret-1"
RELAY_DEADLINE = 300            # s: TCG, a loaded machine, relayd's retry


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def provision(pin):
    return f"""# provisioned by tests/e2e/test_relay_box.py
hostname        {HOST}
mail-domain     example.com
internal-domain office.lan

[lan]
address         {LAN}/24

[smarthost]
host            {SMARTHOST}
port            587
tls             starttls
verify          pin
pin             {pin}
user            relay
password-file   smart.pass
masquerade      domain
masquerade-domain {MASQ}
"""


class BoxSMTP(smtplib.SMTP):
    """smtplib with the box's name as the TLS server name, over a port forward."""
    def __init__(self, fwd, **kw):
        self._fwd = fwd
        super().__init__(FQDN, 587, **kw)

    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", self._fwd), timeout)


# QEMU runs this for each connection the box makes to SMARTHOST:587 (a
# guestfwd "cmd:"), the connection on stdin/stdout: it bridges it to the
# smart host on the host's loopback.
BRIDGE = """#!/usr/bin/python3
import selectors, socket, os
s = socket.create_connection(("127.0.0.1", {port}))
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ, s)
sel.register(s, selectors.EVENT_READ, 1)
while True:
    for key, _ in sel.select():
        if key.fileobj == 0:
            data = os.read(0, 65536)
            if not data:
                s.shutdown(socket.SHUT_WR)
                sel.unregister(0)
                continue
            s.sendall(data)
        else:
            data = s.recv(65536)
            if not data:
                raise SystemExit(0)
            while data:
                data = data[os.write(1, data):]
"""


def wait_for(pred, deadline_s, what):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(1)
    raise AssertionError(f"timed out after {deadline_s} s: {what}")


def test_relay_through_host_postfix(tmp_path):
    pf = Postfix(RelayCA(tmp_path / "ca"))
    pf.start(*free_ports(2))
    try:
        conf = tmp_path / "provision.conf"
        conf.write_text(provision(pf.pin))
        bridge = tmp_path / "smarthost-bridge.py"
        bridge.write_text(BRIDGE.format(port=pf.port_starttls))
        bridge.chmod(0o755)
        fwd = f"tcp:{SMARTHOST}:587-cmd:{bridge}"
        with Box(tmp_path, provision=conf, wan_guestfwd=[fwd]) as box:
            box.wait_ready()
            assert box.sh("sv status relayd").startswith("run:")
            # "ready" does not wait for the WAN lease (QEMU's DHCP).
            wait_for(lambda: re.search(r"inet 10\.0\.2\.\d+/",
                                       box.sh("ip -4 -o addr show eth0", check=False)),
                     90, "the WAN lease")
            box.sh("printf 'relaypass\\n' | postern secret set smart.pass")
            box.sh(f"printf '%s\\n' '{PASSWORD}' | postern user add alice", timeout=180)
            pem = box.sh("cat /data/secrets/tls/ca.pem")
            m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)
            assert m, pem
            cafile = tmp_path / "box-ca.pem"
            cafile.write_text(m.group(0) + "\n")
            ctx = ssl.create_default_context(cafile=str(cafile))

            token = f"relay-e2e-{int(time.time())}"
            msg = EmailMessage()
            msg["From"] = "alice@example.com"
            msg["To"] = "friend@remote.test"
            msg["Subject"] = f"e2e {token}"
            body = f"Hello,\n.a line starting with a dot\nthe token is {token}.\n"
            msg.set_content(body)
            with BoxSMTP(box.ports["SMTP"], timeout=120) as s:
                s.starttls(context=ctx)
                s.login("alice", PASSWORD)
                assert s.send_message(msg) == {}

            def arrived():
                for _, m in pf.sink():
                    if token.encode() in m:
                        return m
                return None
            try:
                got = wait_for(arrived, RELAY_DEADLINE, "the message at the smart host")
            except AssertionError:
                raise AssertionError(
                    "not relayed; queue:\n" + box.sh("postern queue list", check=False)
                    + "\nrelayd's log:\n" + box.sh("grep relayd /data/log/messages | tail -30",
                                                   check=False)
                    + "\nconnections:\n" + box.sh("netstat -tn", check=False)
                    + "\nsmart host log:\n" + pf.log())
            text = got.decode(errors="replace").replace("\r\n", "\n")
            # The masqueraded envelope (Return-Path is what Postfix got in
            # MAIL FROM), the recipient, the header From untouched, and the
            # body with its dot line intact (dot-stuffed on the wire).
            assert f"Return-Path: <alice@{MASQ}>" in text, text
            assert "Delivered-To: friend@remote.test" in text, text
            assert "From: alice@example.com" in text, text
            assert ".a line starting with a dot\n" in text, text
            assert f"the token is {token}." in text, text
            # It came over TLS, with AUTH as the smart-host user.
            log = pf.log()
            assert "sasl_method=PLAIN, sasl_username=relay" in log or \
                "sasl_method=LOGIN, sasl_username=relay" in log, log
            assert "TLS connection established from" in log, log
            # And it left the box's queue.
            wait_for(lambda: box.sh("ls /data/queue/env | wc -l").strip() == "0", 60,
                     "the box's queue empty")
    finally:
        pf.cleanup()
