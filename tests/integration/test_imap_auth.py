"""imapd password checks run on worker threads: while one LOGIN's PBKDF2 is
being computed, another connection's NOOP is answered at once; a client
that hangs up during the check does not disturb the daemon."""
import socket
import ssl
import time

from test_imap import PW, box, ctx  # noqa: F401 (fixture)


def tls_conn(box):
    s = ctx().wrap_socket(socket.create_connection(("127.0.0.1", box.p993)))
    s.settimeout(30)
    assert s.recv(4096).startswith(b"* OK")
    return s


def until(s, token):
    data = b""
    while token not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_noop_answered_while_login_is_checked(box):
    a, b = tls_conn(box), tls_conn(box)
    # Several logins in a row keep the two workers busy for a while (no
    # cache hits: each uses a wrong password, which is never cached;
    # different users so the throttle does not short-cut them).
    t0 = time.monotonic()
    a.sendall(b"a1 LOGIN alice " + PW.encode() + b"\r\n")
    b.sendall(b"b1 NOOP\r\n")
    until(b, b"b1 OK")
    noop = time.monotonic() - t0
    # The KDF takes ~0.2 s (more under ASan); the NOOP did not wait for it:
    # when its answer came, the LOGIN had none yet.
    a.setblocking(False)
    try:
        early = a.recv(4096)
    except (ssl.SSLWantReadError, BlockingIOError):
        early = b""
    a.setblocking(True)
    a.settimeout(30)
    assert b"a1 " not in early, (noop, early)
    until(a, b"a1 OK")
    login = time.monotonic() - t0
    assert noop < login, (noop, login)
    a.close()
    b.close()


def test_many_logins_do_not_serialize_other_clients(box):
    conns = [tls_conn(box) for _ in range(4)]
    other = tls_conn(box)
    t0 = time.monotonic()
    for i, c in enumerate(conns):
        c.sendall(b"l%d LOGIN bob bob-pw\r\n" % i)
    worst = 0.0
    for k in range(5):
        t = time.monotonic()
        other.sendall(b"n%d NOOP\r\n" % k)
        until(other, b"n%d OK" % k)
        worst = max(worst, time.monotonic() - t)
    for i, c in enumerate(conns):
        assert b"l%d OK" % i in until(c, b"l%d " % i)
    total = time.monotonic() - t0
    assert worst < 0.1 or worst < total / 4, (worst, total)
    for c in conns + [other]:
        c.close()


def test_hangup_during_check(box):
    for _ in range(3):
        s = tls_conn(box)
        s.sendall(b"x LOGIN alice wrong-password\r\n")
        s.close()
    s = tls_conn(box)
    s.sendall(b"y LOGIN alice " + PW.encode() + b"\r\n")
    # alice is throttled for a moment after three failures: OK or NO, but an answer.
    assert until(s, b"y ").count(b"y ") == 1
    s.sendall(b"z LOGOUT\r\n")
    until(s, b"z OK")
    s.close()
    assert box.proc.poll() is None
