#!/usr/bin/python3
"""Build-time check (issue 9): the board's kernel configuration carries
every netfilter table, match and target the generated rule sets use.

    check-netfilter.py KERNEL_CONFIG POSTERN [OPTION-TO-DROP ...]

POSTERN is a `postern` binary that runs here (the x86_64 target build, or
the host build in the tests). It prints the IPv4 and IPv6 rule sets of
representative configurations (router mode with every optional rule,
foreign DNS rejected, single-interface mode with the office router's
rules); every table (`*nat`), match (`-m limit`) and target (`-j LOG`) in
them is mapped to its kernel options (NEEDS) and each must be `=y` in
KERNEL_CONFIG. scripts/build-kernel.sh then fails when an option listed
there does not stick, so together the built kernel has them all. A rule
using something NEEDS does not know fails here until it is added (to NEEDS
and to the kernel configuration). OPTION-TO-DROP: pretend these options
are missing (the tests prove the check can fail).

The Makefile runs it before laying out the image (`make netfilter-check`);
tests/integration/test_firewall_kernel.py runs it with the host build."""
import os
import re
import subprocess
import sys
import tempfile

# What the rules name -> the kernel options they need.
NEEDS = {
    "table filter": ["CONFIG_NETFILTER", "CONFIG_NETFILTER_XTABLES",
                     "CONFIG_IP_NF_IPTABLES", "CONFIG_IP_NF_FILTER",
                     "CONFIG_IP6_NF_IPTABLES", "CONFIG_IP6_NF_FILTER"],
    "table nat": ["CONFIG_NF_NAT", "CONFIG_IP_NF_NAT"],
    "match conntrack": ["CONFIG_NF_CONNTRACK", "CONFIG_NETFILTER_XT_MATCH_CONNTRACK"],
    "match limit": ["CONFIG_NETFILTER_XT_MATCH_LIMIT"],
    "match multiport": ["CONFIG_NETFILTER_XT_MATCH_MULTIPORT"],
    "target LOG": ["CONFIG_NETFILTER_XT_TARGET_LOG"],
    "target REJECT": ["CONFIG_IP_NF_TARGET_REJECT", "CONFIG_IP6_NF_TARGET_REJECT"],
    "target MASQUERADE": ["CONFIG_NETFILTER_XT_TARGET_MASQUERADE",
                          "CONFIG_IP_NF_TARGET_MASQUERADE"],
    "target DNAT": ["CONFIG_NETFILTER_XT_NAT"],
}
BUILTIN = {"ACCEPT", "DROP", "RETURN"}   # and user chains (postern-*)

# Configurations that between them make the generator emit every kind of
# rule it has (see src/lib/firewall.c).
CONFS = [
    """mail-domain example.com
[lan]
address 192.168.10.1/24
address6 fd00:10::1/64
[smtp]
port25 yes
port25-hosts 192.168.10.40
[firewall]
allow 192.168.10.50 25
""",
    """mail-domain example.com
[lan]
address 192.168.10.1/24
address6 fd00:10::1/64
[firewall]
foreign-dns reject
""",
    """mail-domain example.com
[lan]
interface eth0
address 192.168.10.5/24
gateway 192.168.10.1
[firewall]
single-interface yes
""",
]


def features(text):
    """The set of "table X" / "match X" / "target X" a rule text uses."""
    found = {f"table {t}" for t in re.findall(r"^\*(\w+)", text, re.M)}
    found |= {f"match {m}" for m in re.findall(r" -m (\S+)", text)}
    for t in re.findall(r" -j (\S+)", text):
        if t not in BUILTIN and not t.startswith("postern-"):
            found.add(f"target {t}")
    return found


def rules(postern):
    text = ""
    with tempfile.TemporaryDirectory() as d:
        for i, c in enumerate(CONFS):
            conf = os.path.join(d, f"{i}.conf")
            with open(conf, "w") as f:
                f.write(c)
            r = subprocess.run([postern, "firewall", "show", conf], capture_output=True,
                               text=True, timeout=60)
            if r.returncode != 0:
                raise SystemExit(f"check-netfilter: {postern} firewall show failed: {r.stderr}")
            text += r.stdout
    return text


def check(kconfig_text, text, drop=()):
    """Returns the problems (empty when every option is there)."""
    have = set(re.findall(r"^(CONFIG_\w+)=y", kconfig_text, re.M)) - set(drop)
    used = features(text)
    problems = []
    unknown = sorted(used - NEEDS.keys())
    if unknown:
        problems.append(f"the rules use {unknown}: add their kernel options to NEEDS in "
                        f"scripts/check-netfilter.py and to the kernel configuration")
    missing = sorted({o for f in used & NEEDS.keys() for o in NEEDS[f]} - have)
    if missing:
        problems.append(f"the kernel configuration lacks {missing}")
    if "table filter" not in used or "target REJECT" not in used:
        problems.append("no rule set was generated (postern firewall show printed no rules)")
    return problems


def main(argv):
    if len(argv) < 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 1
    with open(argv[1]) as f:
        kconfig = f.read()
    problems = check(kconfig, rules(argv[2]), argv[3:])
    for p in problems:
        print(f"check-netfilter: {argv[1]}: {p}", file=sys.stderr)
    if not problems:
        print(f"check-netfilter: {argv[1]} has every netfilter option the rules use")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
