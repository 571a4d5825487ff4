"""Every table, match and target the generated rule sets use is built into
the image's kernel: board/<board>/kernel.config lists the option (and
scripts/build-kernel.sh fails the build when a listed option does not
stick). A rule using something new fails here until the option is added."""
import os
import pathlib
import re
import subprocess

TOP = pathlib.Path(__file__).resolve().parents[2]
BOARD = os.environ.get("BOARD", "x86_64")

# What the rules name -> the kernel options they need.
NEEDS = {
    "table filter": ["CONFIG_IP_NF_IPTABLES", "CONFIG_IP_NF_FILTER",
                     "CONFIG_IP6_NF_IPTABLES", "CONFIG_IP6_NF_FILTER"],
    "table nat": ["CONFIG_NF_NAT", "CONFIG_IP_NF_NAT"],
    "match conntrack": ["CONFIG_NF_CONNTRACK", "CONFIG_NETFILTER_XT_MATCH_CONNTRACK"],
    "match limit": ["CONFIG_NETFILTER_XT_MATCH_LIMIT"],
    "match multiport": ["CONFIG_NETFILTER_XT_MATCH_MULTIPORT"],
    "target LOG": ["CONFIG_NETFILTER_XT_TARGET_LOG"],
    "target REJECT": ["CONFIG_IP_NF_TARGET_REJECT", "CONFIG_IP6_NF_TARGET_REJECT"],
    "target MASQUERADE": ["CONFIG_NETFILTER_XT_TARGET_MASQUERADE", "CONFIG_IP_NF_TARGET_MASQUERADE"],
    "target DNAT": ["CONFIG_NETFILTER_XT_NAT"],
}
BUILTIN = {"ACCEPT", "DROP", "RETURN"}   # and user chains (postern-*)

CONF = """mail-domain example.com
[lan]
address 192.168.10.1/24
address6 fd00:10::1/64
[smtp]
port25 yes
port25-hosts 192.168.10.40
[firewall]
allow 192.168.10.50 25
"""


def features(text):
    found = {f"table {t}" for t in re.findall(r"^\*(\w+)", text, re.M)}
    found |= {f"match {m}" for m in re.findall(r" -m (\S+)", text)}
    for t in re.findall(r" -j (\S+)", text):
        if t not in BUILTIN and not t.startswith("postern-"):
            found.add(f"target {t}")
    return found


def test_kernel_config_has_every_netfilter_option(hostbin, tmp_path):
    confs = [CONF, CONF + "foreign-dns reject\n",
             # single-interface mode, with the office router's rules
             "mail-domain example.com\n[lan]\ninterface eth0\naddress 192.168.10.5/24\n"
             "gateway 192.168.10.1\n[firewall]\nsingle-interface yes\n"]
    text = ""
    for i, c in enumerate(confs):
        conf = tmp_path / f"{i}.conf"
        conf.write_text(c)
        text += subprocess.run([hostbin("postern"), "firewall", "show", str(conf)], check=True,
                               capture_output=True, text=True).stdout
    kconf = (TOP / "board" / BOARD / "kernel.config").read_text()
    have = set(re.findall(r"^(CONFIG_\w+)=y", kconf, re.M))
    used = features(text)
    assert {"match conntrack", "target REJECT", "target LOG", "target DNAT",
            "target MASQUERADE", "table nat"} <= used
    unknown = sorted(used - NEEDS.keys())
    assert not unknown, f"rules use {unknown}: add their kernel options to NEEDS and kernel.config"
    missing = sorted({o for f in used for o in NEEDS[f]} - have)
    assert not missing, f"board/{BOARD}/kernel.config lacks {missing}"
