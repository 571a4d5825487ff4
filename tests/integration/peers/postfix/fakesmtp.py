"""A scripted fake smart host that records every byte it receives (in clear
and, after STARTTLS, decrypted), so tests assert on what the server side
got: credentials and messages must never reach a server that failed
verification.

    srv = FakeSmtp(cert=crt, key=key, starttls=True, inject=False,
                   rcpt_reply=lambda addr: "250 ok")
    srv.start(); ... srv.received() -> bytes; srv.stop()
"""
import socket
import ssl
import threading


class FakeSmtp:
    def __init__(self, cert=None, key=None, starttls=True, inject=False, implicit=False,
                 rcpt_reply=None):
        self.cert, self.key = cert, key
        self.starttls, self.inject, self.implicit = starttls, inject, implicit
        self.rcpt_reply = rcpt_reply or (lambda addr: "250 2.1.5 ok")
        self.lock = threading.Lock()
        self.log = bytearray()
        self.messages = []        # (mail_from, [rcpts], data)
        self.sessions = 0
        self.handshake_errors = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopping = False

    def start(self):
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping = True
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()

    def received(self):
        with self.lock:
            return bytes(self.log)

    def _accept(self):
        while not self.stopping:
            c, _ = self.sock.accept()
            if self.stopping:
                c.close()
                break
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _ctx(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def _wrap(self, c):
        try:
            return self._ctx().wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.handshake_errors.append(str(e))
            return None

    def _session(self, c):
        with self.lock:
            self.sessions += 1
        c.settimeout(20)
        if self.implicit:
            c = self._wrap(c)
            if not c:
                return
        f = _Lines(c, self)
        try:
            self._dialogue(c, f)
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()

    def _dialogue(self, c, f):
        c.sendall(b"220 fake.provider.test ESMTP\r\n")
        tls = self.implicit
        mail, rcpts = None, []
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                caps = [b"fake.provider.test", b"PIPELINING"]
                if not tls and self.starttls:
                    caps.append(b"STARTTLS")
                caps.append(b"AUTH PLAIN LOGIN")
                c.sendall(b"".join(b"250-" + x + b"\r\n" for x in caps[:-1]) +
                          b"250 " + caps[-1] + b"\r\n")
            elif cmd == b"STARTTLS":
                if self.inject:
                    # CVE-2011-0411 style: a reply pipelined behind the 220.
                    c.sendall(b"220 go ahead\r\n250-fake\r\n250 AUTH PLAIN\r\n")
                else:
                    c.sendall(b"220 go ahead\r\n")
                w = self._wrap(c)
                if not w:
                    return
                c, tls = w, True
                f.sock, f.buf = c, b""   # nothing read in clear carries over
            elif cmd.startswith(b"AUTH"):
                c.sendall(b"235 2.7.0 ok\r\n")
            elif cmd.startswith(b"MAIL FROM:"):
                mail, rcpts = line.strip()[10:], []
                c.sendall(b"250 2.1.0 ok\r\n")
            elif cmd.startswith(b"RCPT TO:"):
                addr = line.strip()[8:].strip(b"<>").decode()
                r = self.rcpt_reply(addr)
                if r.startswith("2"):
                    rcpts.append(addr)
                c.sendall(r.encode() + b"\r\n")
            elif cmd == b"DATA" and not rcpts:
                c.sendall(b"554 5.5.1 no valid recipients\r\n")
            elif cmd == b"DATA":
                c.sendall(b"354 go\r\n")
                data = f.read_data()
                with self.lock:
                    self.messages.append((mail, rcpts, data))
                c.sendall(b"250 2.0.0 queued\r\n")
            elif cmd == b"QUIT":
                c.sendall(b"221 bye\r\n")
                return
            elif cmd == b"RSET":
                c.sendall(b"250 ok\r\n")
            else:
                c.sendall(b"500 what\r\n")


class _Lines:
    def __init__(self, sock, srv):
        self.sock, self.srv, self.buf = sock, srv, b""

    def _more(self):
        d = self.sock.recv(65536)
        if d:
            with self.srv.lock:
                self.srv.log.extend(d)
        return d

    def readline(self):
        while b"\n" not in self.buf:
            d = self._more()
            if not d:
                return b""
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def read_data(self):
        self.buf = b"\r\n" + self.buf   # an empty text is just ".\r\n"
        while b"\r\n.\r\n" not in self.buf:
            d = self._more()
            if not d:
                return b""
            self.buf += d
        data, self.buf = self.buf.split(b"\r\n.\r\n", 1)
        return data[2:] + b"\r\n"
