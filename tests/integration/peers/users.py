"""Users-file helpers for tests (docs/USERS.md): password hashes in the
format the box's users parser reads.

Tests under tests/integration import it as `from peers.users import
pbkdf2_hash` (pytest puts tests/integration on sys.path); helpers living
elsewhere put tests/integration on sys.path first, as smtpd_box.py does.
"""
import base64
import hashlib
import os

# The users parser's minimum iteration count: keeps ASan builds quick.
# (The box itself writes 310,000, src/lib/users.h.)
ITERATIONS = 200000


def _b64(raw):
    """Unpadded standard base64, as in "$pbkdf2-sha256$i=N$SALT$KEY"."""
    return base64.b64encode(raw).decode().rstrip("=")


def pbkdf2_hash(password, salt=None, it=ITERATIONS):
    """The users-file hash of password: PBKDF2-HMAC-SHA256 with it
    iterations and salt (16 random bytes when None)."""
    salt = os.urandom(16) if salt is None else salt
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, it)
    return f"$pbkdf2-sha256$i={it}${_b64(salt)}${_b64(dk)}"
