#!/usr/bin/python3
"""DNS benchmark (issue 8): cached-answer queries per second with dnsperf
against Postern's dnsd (built without sanitizers), unbound (one thread)
and dnsmasq, in the same run on the same machine, each forwarding to the
same upstream (a dnsmasq answering every *.internet.test name) and
pre-warmed with the names asked; printed as ratios, with dnsperf's own
ceiling against a trivial responder (echoes each query as an empty
NOERROR answer), and dnsd's memory with 100,000 cached records.

    /usr/bin/python3 tests/bench/bench_dns.py [--seconds N] [--records N]

Needs dnsperf, unbound, dnsmasq, gcc. Everything listens on 127.0.0.1.
"""
import argparse
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from benchlib import build_daemon  # noqa: E402

TOP = pathlib.Path(__file__).resolve().parents[2]
NAMES = 1000            # distinct names in the cached-answer run
RESPONDER_C = r"""
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#define N 64
int main(int argc, char **argv)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
		.sin_addr.s_addr = htonl(0x7f000001) };
	static struct mmsghdr m[N];
	static struct iovec io[N];
	static char buf[N][1500];
	static struct sockaddr_in peer[N];
	if (argc < 2 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		return 1;
	for (;;) {
		for (int i = 0; i < N; i++) {
			io[i].iov_base = buf[i];
			io[i].iov_len = sizeof buf[i];
			memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
			m[i].msg_hdr.msg_iov = &io[i];
			m[i].msg_hdr.msg_iovlen = 1;
			m[i].msg_hdr.msg_name = &peer[i];
			m[i].msg_hdr.msg_namelen = sizeof peer[i];
		}
		int n = recvmmsg(fd, m, N, MSG_WAITFORONE, NULL);
		for (int i = 0; i < n; i++) {
			buf[i][2] |= 0x80;	/* QR */
			buf[i][3] = 0;		/* NOERROR */
			io[i].iov_len = m[i].msg_len;
		}
		if (n > 0)
			sendmmsg(fd, m, (unsigned)n, 0);
	}
}
"""


def free_port():
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
    raise RuntimeError("no free port")


def wait_udp(port, timeout=10):
    q = bytes.fromhex("12340100000100000000000005726561647908696e7465726e657404746573740000010001")
    end = time.time() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.time() < end:
            s.sendto(q, ("127.0.0.1", port))
            try:
                s.recv(1500)
                return
            except socket.timeout:
                continue
    raise RuntimeError(f"nothing answers on {port}")


def rss_kb(pid):
    text = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))


def build_dnsd(out):
    return build_daemon("dnsd", out)
class Procs:
    def __init__(self):
        self.procs = []

    def start(self, cmd, log, **kw):
        p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def dnsperf(port, names, seconds=None, warm=False):
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(names)]
    cmd += ["-n", "1", "-q", "100"] if warm else ["-l", str(seconds), "-c", "4", "-q", "200"]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    return (float(qps.group(1)) if qps else 0.0), (int(lost.group(1)) if lost else -1), out


def start_peers(P, d, upstream_port):
    """unbound (one thread) and dnsmasq, both forwarding to the upstream."""
    ports = {"unbound": free_port(), "dnsmasq": free_port()}
    conf = d / "unbound.conf"
    conf.write_text(f"""server:
  interface: 127.0.0.1@{ports['unbound']}
  port: {ports['unbound']}
  num-threads: 1
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{d}"
  pidfile: "{d}/unbound.pid"
  use-syslog: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  do-not-query-localhost: no
  outgoing-interface: 127.0.0.1
  msg-cache-size: 64m
  rrset-cache-size: 128m
  local-zone: "test." nodefault
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@{upstream_port}
""")
    procs = {"unbound": P.start([shutil.which("unbound") or "/usr/sbin/unbound", "-d", "-c",
                                 str(conf)], d / "unbound.log")}
    procs["dnsmasq"] = P.start(["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv",
                                "--no-hosts", "--no-poll", "--bind-interfaces",
                                "--listen-address=127.0.0.1", f"--port={ports['dnsmasq']}",
                                f"--server=127.0.0.1#{upstream_port}", "--cache-size=10000",
                                f"--pid-file={d}/dnsmasq.pid", "--user=nobody",
                                "--group=nogroup"], d / "dnsmasq.log")
    return ports, procs


def start_dnsd(P, d, binary, upstream_port):
    run = pathlib.Path(tempfile.mkdtemp(prefix="bench-dnsd-"))
    run.chmod(0o755)
    conf = run / "postern.conf"
    conf.write_text("hostname postern\nmail-domain example.com\ninternal-domain office.lan\n"
                    "[lan]\naddress 192.168.10.1/24\n[dns]\nupstream 127.0.0.1\n"
                    "cache-size 256M\n")
    conf.chmod(0o644)
    port = free_port()
    cmd = [str(binary), "-f", "-c", str(conf), "--listen", f"127.0.0.1:{port}",
           "--upstream-port", str(upstream_port), "--rate-limit", "0",
           "--wan-dns", str(run / "wan-dns"), "--leases", str(run / "leases")]
    if os.geteuid() == 0:
        cmd += ["--user", "nobody"]
    return port, P.start(cmd, d / "dnsd.log")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--records", type=int, default=100000)
    a = ap.parse_args()
    for tool in ("dnsperf", "unbound", "dnsmasq", "gcc"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            print(f"bench_dns: {tool} missing, skipped")
            return 0
    P = Procs()
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        binary = d / "dnsd"
        kind = build_dnsd(binary)
        subprocess.run(["gcc", "-O2", "-o", str(d / "responder"), "-x", "c", "-"],
                       input=RESPONDER_C, text=True, check=True)
        names = d / "names.txt"
        names.write_text("".join(f"n{i}.internet.test A\n" for i in range(NAMES)))
        try:
            up = free_port()
            P.start(["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                     "--no-poll", "--bind-interfaces", "--listen-address=127.0.0.1",
                     f"--port={up}", "--address=/internet.test/192.0.2.1", "--local-ttl=3600",
                     f"--pid-file={d}/up.pid", "--user=nobody", "--group=nogroup"],
                    d / "up.log")
            wait_udp(up)
            ports, procs = start_peers(P, d, up)
            ports["postern"], procs["postern"] = start_dnsd(P, d, binary, up)
            ports["ceiling"] = free_port()
            P.start([str(d / "responder"), str(ports["ceiling"])], d / "responder.log")
            for name in ("ceiling", "postern", "unbound", "dnsmasq"):
                wait_udp(ports[name])
            print(f"dnsd: {kind}; dnsperf -c 4 -q 200 -l {a.seconds}, {NAMES} names, "
                  "all cached (pre-warmed)")
            qps = {}
            for name in ("ceiling", "postern", "unbound", "dnsmasq"):
                if name != "ceiling":
                    dnsperf(ports[name], names, warm=True)
                qps[name], lost, _ = dnsperf(ports[name], names, a.seconds)
                print(f"  {name:8s} {qps[name]:10.0f} QPS (lost {lost})", flush=True)
            print(f"ratio postern/unbound(1 thread) {qps['postern'] / max(qps['unbound'], 1):.2f}, "
                  f"postern/dnsmasq {qps['postern'] / max(qps['dnsmasq'], 1):.2f}, "
                  f"postern/dnsperf ceiling {qps['postern'] / max(qps['ceiling'], 1):.2f}")
            memory(procs, ports, d, a.records)
        finally:
            P.stop()
    return 0


def memory(procs, ports, d, records):
    big = d / "many.txt"
    big.write_text("".join(f"m{i}.internet.test A\n" for i in range(records)))
    before = {n: rss_kb(procs[n].pid) for n in ("postern", "unbound")}
    lost = {}
    for n in ("postern", "unbound"):
        _, lost[n], _ = dnsperf(ports[n], big, warm=True)
    after = {n: rss_kb(procs[n].pid) for n in ("postern", "unbound")}
    for n in ("postern", "unbound"):
        # a lost query is a record not cached: the figure is per record
        # actually answered (and so cached)
        cached = records - max(lost[n], 0)
        print(f"memory {n}: RSS {before[n] / 1024:.1f} MiB with {NAMES} names cached, "
              f"{after[n] / 1024:.1f} MiB after {cached} more "
              f"({(after[n] - before[n]) * 1024 / max(cached, 1):.0f} bytes per record; "
              f"{lost[n]} of {records} queries lost)")


if __name__ == "__main__":
    sys.exit(main())
