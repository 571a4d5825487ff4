#!/usr/bin/python3
"""Build-time check (issue 9): the board's kernel configuration carries
every netfilter table, match and target the generated rule sets use.

    check-netfilter.py [--work DIR] KERNEL_CONFIG [OPTION-TO-DROP ...]

No target binary runs here (the board may be aarch64 on an x86_64 build
machine): the script compiles the rule generator itself - src/lib/
firewall.c and the configuration parser, the very code `postern firewall`
runs on the box - with the build machine's compiler ($BUILD_CC, default
cc; no sanitizers) into DIR (default a temporary directory), and has it
print the IPv4 and IPv6 rule sets of representative configurations
(router mode with every optional rule, foreign DNS rejected,
single-interface mode with the office router's rules) and the fallback
rule sets. Every table (`*nat`), match (`-m limit`) and target (`-j LOG`)
in them is mapped to its kernel options (NEEDS) and each must be `=y` in
KERNEL_CONFIG. scripts/build-kernel.sh then fails when an option listed
there does not stick, so together the built kernel has them all. A rule
using something NEEDS does not know fails here until it is added (to NEEDS
and to the kernel configuration). OPTION-TO-DROP: pretend these options
are missing (the tests prove the check can fail).

The Makefile runs it before laying out the image (`make netfilter-check`,
again only when the kernel configuration, this script or src/lib changed);
tests/integration/test_firewall_kernel.py runs it too."""
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


TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(TOP, "src", "lib")
# The generator and what it links against (the configuration parser).
GEN_SRC = ["firewall.c", "strbuf.c", "fsutil.c", "config.c", "config-check.c",
           "config-edit.c", "config-value.c"]
GEN_MAIN = r"""
#include <stdio.h>
#include "config.h"
#include "firewall.h"

static char buf[FW_RULES_MAX];

static int one(const char *path)
{
	static struct config_errors errs;
	struct config *cfg = config_load(path, &errs);
	char err[FW_ERR_MAX];

	for (int i = 0; !cfg && i < errs.count; i++)
		fprintf(stderr, "%s\n", errs.e[i].text);
	if (!cfg)
		return -1;
	for (int fam = FW_IPV4; fam <= FW_IPV6; fam++) {
		if (firewall_rules(cfg, fam, buf, sizeof buf, err, sizeof err) < 0)
			goto fail;
		fputs(buf, stdout);
	}
	if (cfg->firewall.single_interface) {
		if (firewall_office_rules(cfg, buf, sizeof buf, err, sizeof err) < 0)
			goto fail;
		fputs(buf, stdout);
	}
	config_free(cfg);
	return 0;
fail:
	fprintf(stderr, "%s: %s\n", path, err);
	config_free(cfg);
	return -1;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (one(argv[i]) < 0)
			return 1;
	for (int fam = FW_IPV4; fam <= FW_IPV6; fam++)
		for (int named = 0; named < 2; named++) {
			if (firewall_fallback_rules(fam, named ? "eth1" : NULL, buf, sizeof buf) < 0)
				return 1;
			fputs(buf, stdout);
		}
	return 0;
}
"""


def build_tool(work):
    """Compiles the generator for this machine into work; returns its path."""
    main = os.path.join(work, "fw-rules.c")
    tool = os.path.join(work, "fw-rules")
    with open(main, "w") as f:
        f.write(GEN_MAIN)
    cc = os.environ.get("BUILD_CC", "cc").split()
    cmd = cc + ["-std=c11", "-O1", "-w", "-D_DEFAULT_SOURCE", "-D_GNU_SOURCE", "-I", LIB,
                "-o", tool, main] + [os.path.join(LIB, s) for s in GEN_SRC]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise SystemExit("check-netfilter: cannot build the rule generator for this machine "
                         f"(update GEN_SRC in scripts/check-netfilter.py?):\n{r.stderr}")
    return tool


def rules(work=None):
    """The rule texts of CONFS and the fallback rule sets."""
    with tempfile.TemporaryDirectory() as d:
        tool = build_tool(work or d)
        confs = []
        for i, c in enumerate(CONFS):
            confs.append(os.path.join(d, f"{i}.conf"))
            with open(confs[-1], "w") as f:
                f.write(c)
        r = subprocess.run([tool, *confs], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SystemExit(f"check-netfilter: the rule generator failed: {r.stderr}")
        return r.stdout


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
        problems.append("no rule set was generated (the generator printed no rules)")
    return problems


def main(argv):
    work = None
    if len(argv) > 2 and argv[1] == "--work":
        work = argv[2]
        os.makedirs(work, exist_ok=True)
        argv = argv[:1] + argv[3:]
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 1
    with open(argv[1]) as f:
        kconfig = f.read()
    problems = check(kconfig, rules(work), argv[2:])
    for p in problems:
        print(f"check-netfilter: {argv[1]}: {p}", file=sys.stderr)
    if not problems:
        print(f"check-netfilter: {argv[1]} has every netfilter option the rules use")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
