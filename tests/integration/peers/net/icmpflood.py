"""icmpflood.py HOST COUNT: sends COUNT ICMP echo requests (IPv4) to HOST
back to back, then collects replies until 2 s pass without one, and prints
how many came back. Needs root (raw socket). The firewall tests use it to
see that ICMP to the box is answered but rate-limited."""
import os
import socket
import struct
import sys
import time

QUIET_S = 2.0


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo(ident, seq):
    payload = b"postern-fw-test"
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(head + payload), ident, seq) + payload


def main():
    host, count = sys.argv[1], int(sys.argv[2])
    ident = os.getpid() & 0xFFFF
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    for seq in range(count):
        s.sendto(echo(ident, seq), (host, 0))
    seen = set()
    s.settimeout(QUIET_S)
    while True:
        try:
            pkt, _ = s.recvfrom(2048)
        except socket.timeout:
            break
        ihl = (pkt[0] & 0x0F) * 4
        typ, _, _, rid, seq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
        if typ == 0 and rid == ident:
            seen.add(seq)
    print(len(seen))


if __name__ == "__main__":
    main()
