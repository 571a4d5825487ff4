"""Every table, match and target the generated rule sets use is built into
the image's kernel. The check itself is scripts/check-netfilter.py, which
the build runs (`make netfilter-check`, a prerequisite of the image): it
compiles the rule generator (src/lib/firewall.c, the code `postern
firewall` runs) for the build machine, so no target binary has to run here.
It must be able to fail: with an option taken away it names the option, and
the Makefile really runs it before the image, without the target build."""
import os
import pathlib
import re
import subprocess

TOP = pathlib.Path(__file__).resolve().parents[2]
BOARD = os.environ.get("BOARD", "x86_64")
SCRIPT = TOP / "scripts" / "check-netfilter.py"
KCONF = TOP / "board" / BOARD / "kernel.config"


def run(*args):
    return subprocess.run(["/usr/bin/python3", str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=300)


def test_kernel_config_has_every_netfilter_option(tmp_path):
    r = run("--work", str(tmp_path), str(KCONF))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "has every netfilter option" in r.stdout
    # The generator it built runs here (a binary for the build machine).
    assert (tmp_path / "fw-rules").exists()


def test_check_fails_naming_a_missing_option():
    for opt in ("CONFIG_NETFILTER_XT_MATCH_LIMIT", "CONFIG_IP6_NF_TARGET_REJECT",
                "CONFIG_NETFILTER_XT_NAT", "CONFIG_NETFILTER_XT_MATCH_CONNTRACK"):
        r = run(str(KCONF), opt)
        assert r.returncode == 1 and opt in r.stderr, (opt, r.stderr)


def test_the_rules_use_what_the_check_knows():
    """The rule texts the check reads include IPv4 and IPv6, NAT, the LOG
    with its rate limit, the rejects and the fallback rule sets: it sees
    what the box loads."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("check_netfilter", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = mod.rules()
    assert {"match conntrack", "match limit", "target REJECT", "target LOG", "target DNAT",
            "target MASQUERADE", "table nat"} <= mod.features(text)
    assert "icmp6-port-unreachable" in text      # the IPv6 rule set is among them
    assert "for the office router" in text       # single-interface mode
    assert "-A INPUT -i eth1 -j postern-fallback" in text
    # A rule with a target the check does not know fails it.
    problems = mod.check(KCONF.read_text(), text + "-A FORWARD -j TPROXY\n")
    assert any("TPROXY" in p for p in problems), problems


def test_the_build_runs_the_check():
    """`make -n image` lists the check before the image is written; the
    check alone needs no target build (another BOARD's binaries would not
    run here)."""
    r = subprocess.run(["make", "-n", "-C", str(TOP), "B=build/netfilter-dry", "image"],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert re.search(r"check-netfilter\.py --work \S+ \\?\s*\S*kernel\.config", out), out[-2000:]
    r = subprocess.run(["make", "-n", "-C", str(TOP), "B=build/netfilter-dry", "netfilter-check"],
                       capture_output=True, text=True, timeout=120)
    assert "check-netfilter.py" in r.stdout, r.stdout + r.stderr
    assert "musl-gcc" not in r.stdout and "/bin/postern" not in r.stdout, r.stdout
