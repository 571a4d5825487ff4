"""Alert mails on the booted image: the runit service `alerts` runs, fetchd
made the status directory for the group mail, and a stopped service gives
the admin exactly one mail (group mail, readable by imapd) and one more when
it runs again (docs/web.md "Alert mails")."""
import pathlib
import re

from box import Box

HERE = pathlib.Path(__file__).resolve().parent
CONF = """# provisioned by tests/e2e/test_alerts_box.py
hostname        alertbox
mail-domain     example.com
internal-domain office.lan

[lan]
address         192.168.78.1/24

[account anna]
server          pop.provider.example
user            anna@example.com
password-file   anna.pass
deliver-to      boss
enabled         no
"""


def mails(box):
    out = box.sh("ls /data/mail/boss/new 2>/dev/null | wc -l")
    return int(out.strip().splitlines()[-1])


def test_alert_mails_on_the_box(tmp_path):
    conf = tmp_path / "provision.conf"
    conf.write_text(CONF)
    with Box(tmp_path, provision=conf) as box:
        box.wait_ready()
        box.sh("printf '%s\\n' 'Boss-Secret-1' | postern user add boss --admin", timeout=180)
        assert box.sh("sv status alerts").startswith("run:")
        st = box.sh("stat -c '%U:%G %a' /run/postern/status")
        assert "root:mail 775" in st, st
        out = box.sh("postern alerts show")
        assert "service:" not in out, out           # a healthy box: no service alert
        box.sh("sv down alerts")        # from here on only this test checks...
        out = box.sh("postern alerts check")        # ... and that is an alert too
        assert "alert: The service alerts is not running." in out, out
        before = mails(box)
        box.sh("sv down imapd")
        out = box.sh("postern alerts check; postern alerts check")
        assert out.count("mailed 1 admin(s): alert: The service imapd is not running.") == 1, out
        assert mails(box) == before + 1
        f = box.sh("stat -c '%U:%G %a' /data/mail/boss/new/* | tail -1")
        assert re.search(r":mail 660", f), f
        box.sh("sv up imapd")
        box.sh("i=0; until sv status imapd | grep -q '^run:'; do i=$((i+1)); "
               "[ $i -gt 60 ] && break; sleep 1; done", timeout=90)
        out = box.sh("postern alerts check; postern alerts check")
        assert out.count("resolved: The service imapd is not running.") == 1, out
        assert mails(box) == before + 2
        st = box.sh("stat -c '%U %a' /data/etc/alerts.state")
        assert "root 600" in st, st        # group auth from /data/etc (setgid), no access
