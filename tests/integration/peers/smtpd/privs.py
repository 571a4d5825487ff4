"""Running fetchd as the tests' root: fetchd refuses to run as root
without -u USER (privdrop.h), so as root the tests hand the data
directory to nobody and let fetchd drop to it, as the box drops to
fetchd. Not root: fetchd keeps the caller's user, nothing to do."""
import os
import pathlib
import subprocess

USER = "nobody"


def drop_args(data):
    """The fetchd arguments that drop privileges, after giving data (and
    everything under it) to USER and making its parents searchable."""
    if os.geteuid() != 0:
        return []
    p = pathlib.Path(data).resolve()
    for anc in p.parents:
        mode = anc.stat().st_mode
        if not mode & 0o001:
            os.chmod(anc, (mode & 0o7777) | 0o001)
    subprocess.run(["chown", "-R", f"{USER}:", str(p)], check=True)
    return ["-u", USER]
