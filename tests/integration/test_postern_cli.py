"""`postern check` and `postern config`: the command line validates and
changes the configuration through the library's code; a refused change
leaves the file byte-identical."""
import os
import subprocess

GOOD = """# office box
hostname   box1        # the name
mail-domain example.com

[smarthost]
host  smtp.provider.example
port  587
"""


def run(hostbin, conf, *args, stdin=None):
    env = dict(os.environ, POSTERN_CONF=str(conf))
    return subprocess.run([hostbin("postern"), *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_check_ok_and_errors_with_line_numbers(hostbin, tmp_path):
    conf = tmp_path / "postern.conf"
    conf.write_text(GOOD)
    r = run(hostbin, conf, "check")
    assert r.returncode == 0 and r.stdout.strip() == f"{conf}: ok"
    conf.write_text(GOOD + "bogus-setting 1\n[account acme]\nport 70000\n")
    r = run(hostbin, conf, "check")
    assert r.returncode == 1
    assert f"{conf}:8:" in r.stderr and "bogus-setting" in r.stderr, r.stderr
    assert f"{conf}:10:" in r.stderr and "70000" in r.stderr, r.stderr


def test_config_set_get_unset_keeps_layout(hostbin, tmp_path):
    conf = tmp_path / "postern.conf"
    conf.write_text(GOOD)
    assert run(hostbin, conf, "config", "set", "smarthost.port", "465").returncode == 0
    text = conf.read_text()
    assert "port  465" in text or "port 465" in text, text
    assert "# office box" in text and "# the name" in text
    r = run(hostbin, conf, "config", "get", "smarthost.port")
    assert r.returncode == 0 and r.stdout.strip() == "465"
    assert run(hostbin, conf, "config", "unset", "smarthost.port").returncode == 0
    assert "465" not in conf.read_text()
    assert run(hostbin, conf, "check").returncode == 0


def test_config_refused_change_leaves_file_alone(hostbin, tmp_path):
    conf = tmp_path / "postern.conf"
    conf.write_text(GOOD)
    before = conf.read_bytes()
    r = run(hostbin, conf, "config", "set", "smarthost.port", "70000")
    assert r.returncode == 1 and "70000" in r.stderr
    r = run(hostbin, conf, "config", "set", "no-such-setting", "1")
    assert r.returncode == 1 and "no-such-setting" in r.stderr
    r = run(hostbin, conf, "config", "get", "no-such-setting")
    assert r.returncode == 1
    assert conf.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name not in ("postern.conf", "postern.conf.lock")]


def test_config_set_creates_a_file_and_refuses_a_broken_one(hostbin, tmp_path):
    conf = tmp_path / "new.conf"
    r = run(hostbin, conf, "config", "set", "mail-domain", "example.org")
    assert r.returncode == 0, r.stderr
    assert run(hostbin, conf, "config", "get", "mail-domain").stdout.strip() == "example.org"
    conf.write_text("this is not a setting\n")
    r = run(hostbin, conf, "config", "set", "hostname", "x")
    assert r.returncode == 1 and "must be valid" in r.stderr
    assert conf.read_text() == "this is not a setting\n"
