"""dnsd's anti-spoofing against a fake upstream (dnspython) that answers
with a wrong ID, another question, the wrong letter case, from another
port, with poison in the extra sections: none of it may get through, the
right answer must. Also: random source port, ID and 0x20 case per query,
one upstream query for many clients asking the same question."""
import pathlib
import sys
import re
import socket
import threading
import time

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rrset
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dns"))
from dnsd_util import Dnsd, free_udp_tcp_port, rrs  # noqa: E402


class FakeUpstream(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.port = free_udp_tcp_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.settimeout(0.2)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.seen = []            # (source port, id, qname as sent)
        self.stop_flag = False
        self.start()

    def run(self):
        while not self.stop_flag:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            q = dns.message.from_wire(data)
            qname = q.question[0].name
            self.seen.append((peer[1], q.id, qname.to_text(omit_final_dot=True)))
            threading.Thread(target=self.answer, args=(q, peer), daemon=True).start()

    def send(self, msg, peer, sock=None):
        (sock or self.sock).sendto(msg.to_wire(), peer)

    def reply(self, q, *records):
        r = dns.message.make_response(q)
        for name, rdtype, text in records:
            r.answer.append(dns.rrset.from_text(name + ".", 300, "IN", rdtype, text))
        return r

    def answer(self, q, peer):
        name = q.question[0].name.to_text(omit_final_dot=True)
        low = name.lower()
        if low == "spoof.example":
            bad = self.reply(q, (name, "A", "6.6.6.1"))
            bad.id = (q.id + 1) % 65536
            self.send(bad, peer)                                   # wrong ID
            other = dns.message.make_query("other.example", "A")
            other.id = q.id
            self.send(self.reply(other, ("other.example", "A", "6.6.6.2")), peer)  # wrong question
            wrongtype = dns.message.make_query(name, "AAAA")
            wrongtype.id = q.id
            self.send(self.reply(wrongtype, (name, "AAAA", "::6")), peer)          # wrong type
            lower = dns.message.make_query(low, "A")
            lower.id = q.id
            lower.flags = q.flags
            self.send(self.reply(lower, (low, "A", "6.6.6.3")), peer)              # wrong case
            self.send(self.reply(q, (name, "A", "6.6.6.4")), peer, self.other)      # wrong port
            time.sleep(0.05)
            self.send(self.reply(q, (name, "A", "192.0.2.55")), peer)
        elif low == "slow.example":
            time.sleep(0.4)
            self.send(self.reply(q, (name, "A", "192.0.2.44")), peer)
        elif low == "poison.example":
            r = self.reply(q, (name, "A", "192.0.2.66"), ("bank.example", "A", "6.6.6.6"))
            r.authority.append(dns.rrset.from_text("example.", 9999, "IN", "NS", "ns.evil."))
            r.additional.append(dns.rrset.from_text("ns.evil.", 9999, "IN", "A", "6.6.6.7"))
            self.send(r, peer)
        elif low == "chain.example":
            self.send(self.reply(q, (name, "CNAME", "c2.example."),
                                 ("unrelated.example", "A", "6.6.6.8"),
                                 ("c2.example", "CNAME", "final.example."),
                                 ("final.example", "A", "192.0.2.88")), peer)
        elif low == "bank.example":
            self.send(self.reply(q, (name, "A", "192.0.2.77")), peer)
        else:
            self.send(self.reply(q, (name, "A", "192.0.2.1")), peer)

    def count(self, name):
        return sum(1 for _, _, n in self.seen if n.lower() == name)

    def close(self):
        self.stop_flag = True
        self.join(timeout=2)
        self.sock.close()
        self.other.close()


@pytest.fixture
def fake():
    f = FakeUpstream()
    yield f
    f.close()


@pytest.fixture
def dnsd(hostbin, tmp_path, fake):
    d = Dnsd(hostbin("dnsd"), tmp_path, free_udp_tcp_port(), fake.port)
    yield d
    assert d.stop() == 0, d.logtext()


def test_spoofed_replies_ignored_right_one_accepted(dnsd, fake):
    r = dnsd.query("spoof.example")
    assert rrs(r) == [("spoof.example", "A", "192.0.2.55")]
    # the wrong-port reply never reaches dnsd's connected socket; the three
    # others were read and ignored
    assert len(re.findall("upstream reply ignored", dnsd.logtext())) >= 3
    # and the cache holds the right answer only
    assert rrs(dnsd.query("SPOOF.example")) == [("spoof.example", "A", "192.0.2.55")]
    assert fake.count("spoof.example") == 1


def test_random_port_id_and_case(dnsd, fake):
    names = [f"randomness{i:02d}.example" for i in range(20)]
    for n in names:
        assert rrs(dnsd.query(n))[0][2] == "192.0.2.1"
    seen = [s for s in fake.seen if s[2].lower() in names]
    assert len(seen) == 20
    ports = {p for p, _, _ in seen}
    ids = {i for _, i, _ in seen}
    assert len(ports) >= 18 and len(ids) >= 18
    # 0x20: the names arrive in mixed case (a name of 15 letters stays all
    # lower case with probability 2^-15)
    mixed = [n for _, _, n in seen if n != n.lower()]
    assert len(mixed) >= 18
    assert {n.lower() for _, _, n in seen} == set(names)


def test_one_upstream_query_for_concurrent_clients(dnsd, fake):
    results = []

    def ask():
        results.append(rrs(dnsd.query("slow.example")))
    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[("slow.example", "A", "192.0.2.44")]] * 6
    assert fake.count("slow.example") == 1


def test_only_the_answer_is_cached(dnsd, fake):
    assert rrs(dnsd.query("poison.example")) == [("poison.example", "A", "192.0.2.66")]
    r = dnsd.query("poison.example")
    assert not r.authority and not r.additional
    # the extra records were not believed: these names are asked upstream
    assert rrs(dnsd.query("bank.example")) == [("bank.example", "A", "192.0.2.77")]
    assert fake.count("bank.example") == 1
    assert rrs(dnsd.query("ns.evil"))[0][2] == "192.0.2.1"
    assert fake.count("ns.evil") == 1


def test_cname_chain_kept_unrelated_dropped(dnsd, fake):
    want = [("chain.example", "CNAME", "c2.example."), ("c2.example", "CNAME", "final.example."),
            ("final.example", "A", "192.0.2.88")]
    assert rrs(dnsd.query("chain.example")) == want
    assert rrs(dnsd.query("chain.example")) == want      # from the cache
    assert fake.count("chain.example") == 1
    assert rrs(dnsd.query("unrelated.example"))[0][2] == "192.0.2.1"
