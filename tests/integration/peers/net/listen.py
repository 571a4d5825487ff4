"""TCP listeners for the firewall tests: listen.py NAME PORT...

Binds every port on all IPv4 and IPv6 addresses, prints "ready" once all are bound, then
answers each connection with one line "NAME PORT from PEER" and closes it,
so the caller learns who got through and with which source address
(masquerading)."""
import selectors
import socket
import sys


def main():
    name, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    sel = selectors.DefaultSelector()
    for port in ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)   # IPv4 too
        s.bind(("::", port))
        s.listen(16)
        sel.register(s, selectors.EVENT_READ, port)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            conn, peer = key.fileobj.accept()
            with conn:
                addr = peer[0].removeprefix("::ffff:")
                conn.sendall(f"{name} {key.data} from {addr}\r\n".encode())


if __name__ == "__main__":
    main()
