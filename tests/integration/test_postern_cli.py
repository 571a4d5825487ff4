"""`postern check` and `postern config`: the command line validates and
changes the configuration through the library's code; a refused change
leaves the file byte-identical."""
import os
import pathlib
import shutil
import subprocess

import pytest

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
    lines = r.stderr.splitlines()
    # file:line: section: setting: message - each error on its own line
    assert f'{conf}:8: smarthost: unknown setting "bogus-setting"' in lines, r.stderr
    assert any(l.startswith(f'{conf}:10: account "acme": port: ') and "70000" in l
               for l in lines), r.stderr
    # A setting that is missing is named, at the line of its section.
    conf.write_text(GOOD + "[account acme]\nport 995\n")
    r = run(hostbin, conf, "check")
    assert r.returncode == 1
    for setting in ("server", "user", "password-file", "deliver-to"):
        assert f'{conf}:8: account "acme": {setting}: required' in r.stderr.splitlines(), r.stderr


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


SECRETS_CONF = GOOD.replace("port  587\n", "port  587\nuser office\npassword-file smart.pass\n") + """
[account anna]
server pop.provider.example
user anna
password-file anna.pass
deliver-to anna
"""


def box_users(tmp_path):
    """The box's service users in a private mount namespace: /etc/passwd and
    /etc/group bind-mounted from the image's rootfs (needs root)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private /etc/passwd")
    top = pathlib.Path(__file__).resolve().parents[2]

    def run_as_box(hostbin, conf, *args, stdin=None):
        env = dict(os.environ, POSTERN_CONF=str(conf), POSTERN_SECRETS=str(tmp_path / "secrets"))
        script = ('mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && '
                  'shift 2 && exec "$@"')
        return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh",
                               str(top / "rootfs/etc/passwd"), str(top / "rootfs/etc/group"),
                               hostbin("postern"), *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=60)
    return run_as_box


def test_secret_set_list_fix(hostbin, tmp_path):
    """`postern secret`: a value from stdin, stored 0600 and owned by the one
    service that uses it (the box's users); list names that service; fix puts
    a loosened file right; bad names and a name two services share are
    refused and change nothing."""
    run = box_users(tmp_path)
    conf = tmp_path / "postern.conf"
    conf.write_text(SECRETS_CONF)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    r = run(hostbin, conf, "secret", "set", "anna.pass", stdin="pop-Secret\n")
    assert r.returncode == 0 and "readable by fetchd only" in r.stdout, r.stdout + r.stderr
    f = secrets / "anna.pass"
    st = f.stat()
    assert f.read_text() == "pop-Secret" and (st.st_mode & 0o777) == 0o600
    assert (st.st_uid, st.st_gid) == (105, 105)        # fetchd in rootfs/etc/passwd
    r = run(hostbin, conf, "secret", "set", "smart.pass", stdin="smtp-Secret\n")
    assert r.returncode == 0 and "relayd" in r.stdout
    assert (secrets / "smart.pass").stat().st_uid == 106
    r = run(hostbin, conf, "secret", "list")
    assert r.returncode == 0
    lines = {l.split()[0]: l for l in r.stdout.splitlines()}
    assert "owner fetchd" in lines["anna.pass"] and "for fetchd" in lines["anna.pass"], r.stdout
    assert "for relayd" in lines["smart.pass"], r.stdout
    os.chown(f, 0, 0)
    f.chmod(0o644)
    r = run(hostbin, conf, "secret", "fix")
    assert r.returncode == 0 and "anna.pass: repaired" in r.stdout, r.stdout + r.stderr
    st = f.stat()
    assert (st.st_mode & 0o777) == 0o600 and st.st_uid == 105
    # refused: no value, a path, a name two services would share
    assert run(hostbin, conf, "secret", "set", "anna.pass", stdin="").returncode == 1
    assert f.read_text() == "pop-Secret"
    assert run(hostbin, conf, "secret", "set", "../x", stdin="v\n").returncode != 0
    assert not (tmp_path / "x").exists()
    conf.write_text(SECRETS_CONF.replace("password-file anna.pass", "password-file smart.pass"))
    r = run(hostbin, conf, "secret", "set", "smart.pass", stdin="v\n")
    assert r.returncode == 1 and "both" in r.stderr, r.stderr
    assert (secrets / "smart.pass").read_text() == "smtp-Secret"
    assert run(hostbin, conf, "secret").returncode == 1
