"""Every table, match and target the generated rule sets use is built into
the image's kernel. The check itself is scripts/check-netfilter.py, which
the build runs (`make netfilter-check`, a prerequisite of the image) with
the target `postern`; here it runs with the host build, and it must be
able to fail: with an option taken away it names the option, and the
Makefile really runs it before the image."""
import os
import pathlib
import re
import subprocess

TOP = pathlib.Path(__file__).resolve().parents[2]
BOARD = os.environ.get("BOARD", "x86_64")
SCRIPT = TOP / "scripts" / "check-netfilter.py"
KCONF = TOP / "board" / BOARD / "kernel.config"


def run(hostbin, *drop):
    return subprocess.run(["/usr/bin/python3", str(SCRIPT), str(KCONF), hostbin("postern"),
                           *drop], capture_output=True, text=True, timeout=120)


def test_kernel_config_has_every_netfilter_option(hostbin):
    r = run(hostbin)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "has every netfilter option" in r.stdout


def test_check_fails_naming_a_missing_option(hostbin):
    for opt in ("CONFIG_NETFILTER_XT_MATCH_LIMIT", "CONFIG_IP6_NF_TARGET_REJECT",
                "CONFIG_NETFILTER_XT_NAT"):
        r = run(hostbin, opt)
        assert r.returncode == 1 and opt in r.stderr, (opt, r.stderr)


def test_the_rules_use_what_the_check_knows(hostbin):
    """The rule texts the check reads include IPv4 and IPv6, NAT, the LOG
    with its rate limit and the rejects: it sees what the box loads."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("check_netfilter", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = mod.rules(hostbin("postern"))
    assert {"match conntrack", "match limit", "target REJECT", "target LOG", "target DNAT",
            "target MASQUERADE", "table nat"} <= mod.features(text)
    assert "icmp6-port-unreachable" in text      # the IPv6 rule set is among them


def test_the_build_runs_the_check():
    """`make -n image` lists the check before the image is written."""
    r = subprocess.run(["make", "-n", "-C", str(TOP), "B=build/netfilter-dry", "image"],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert re.search(r"check-netfilter\.py \S*kernel\.config \S*/bin/postern", out), out[-2000:]
