"""Who may sign in to a dashboard: one ``--auth USER:PASS``, or an htpasswd-style file of
reviewers (``--auth-file``) so that each decision is recorded under its reviewer's name.

The file holds one ``user:hash`` per line (``#`` comments and blank lines allowed). Only
slow, salted hashes are accepted, never a plain password:

- bcrypt (``$2y$``/``$2b$``/``$2a$``, what ``htpasswd -B`` writes), checked by the ``bcrypt``
  package;
- PBKDF2-HMAC-SHA256 in passlib's notation, ``$pbkdf2-sha256$ROUNDS$SALT$HASH`` (SALT and
  HASH in passlib's base64), what ``relabscope passwd FILE USER`` writes.

Anything else (a plain password, ``{SHA}``, Apache's MD5 ``$apr1$``, crypt) is refused when
the server starts, in one line naming the file and the line.

A basic-auth browser sends the password with every request, and Dash makes many; a correct
password is therefore remembered (as a SHA-256 of user, password and a per-process random
key, never the password) for the server's lifetime, so only the first request of a
session pays the hash's cost.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from relabscope.atomic import write_atomic
from relabscope.errors import RelabscopeError

#: PBKDF2 rounds of a hash ``relabscope passwd`` writes (OWASP's 2023 advice for SHA-256)
PBKDF2_ROUNDS = 600_000
_PBKDF2 = "$pbkdf2-sha256$"
_BCRYPT = ("$2y$", "$2b$", "$2a$")


@dataclass
class Users:
    """Sign-in names and their password hashes (see the module docstring)."""

    hashes: dict[str, str]
    source: str = "--auth"
    _known: set[bytes] = field(default_factory=set, repr=False)
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def single(cls, user: str, password: str) -> "Users":
        """The one user of ``--auth USER:PASS`` (hashed at once: the password is not kept)."""
        return cls({user: pbkdf2_hash(password, rounds=10_000)})

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Users":
        """Read an htpasswd-style file.

        Raises:
            RelabscopeError: unreadable, empty, or a line that is not ``user:hash`` with an
                accepted hash (one line naming the file and the line).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RelabscopeError(f"{path}: cannot read the users file ({getattr(exc, 'strerror', None) or exc})") \
                from None
        hashes: dict[str, str] = {}
        for n, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user or not hashed:
                raise RelabscopeError(f"{path}:{n}: expected USER:HASH")
            if not hashed.startswith((_PBKDF2, *_BCRYPT)):
                raise RelabscopeError(f"{path}:{n}: {user}: not a bcrypt or PBKDF2 hash (plain passwords, {{SHA}}, "
                                      "$apr1$ and crypt are refused): htpasswd -B, or relabscope passwd FILE USER")
            if user in hashes:
                raise RelabscopeError(f"{path}:{n}: {user} is listed twice")
            hashes[user] = hashed
        if not hashes:
            raise RelabscopeError(f"{path}: no users in the users file")
        return cls(hashes, source=str(path))

    def verify(self, user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s (constant time for a known user)."""
        hashed = self.hashes.get(user)
        token = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if token in self._known:
                return True
        ok = hashed is not None and check(password, hashed)
        if ok:
            with self._lock:
                self._known.add(token)
        return ok


def pbkdf2_hash(password: str, *, rounds: int = PBKDF2_ROUNDS) -> str:
    """A PBKDF2-HMAC-SHA256 hash of ``password`` with a random salt, in passlib's notation."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return f"{_PBKDF2}{rounds}${_ab64(salt)}${_ab64(digest)}"


def check(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed`` (bcrypt or passlib's PBKDF2-SHA256)."""
    if hashed.startswith(_PBKDF2):
        try:
            rounds, salt, digest = hashed[len(_PBKDF2):].split("$")
            want = _unab64(digest)
            got = hashlib.pbkdf2_hmac("sha256", password.encode(), _unab64(salt), int(rounds), len(want))
        except ValueError:
            return False
        return hmac.compare_digest(got, want)
    try:
        return bool(bcrypt.checkpw(password.encode(), hashed.replace("$2y$", "$2b$", 1).encode()))
    except ValueError:
        return False


def add_user(path: str | os.PathLike, user: str, password: str) -> bool:
    """Write ``user`` with a PBKDF2 hash of ``password`` into the users file at ``path``
    (created if missing, other lines kept); True when the user was there before."""
    if not user or ":" in user or user != user.strip():
        raise RelabscopeError(f"{user!r}: a user name is not empty and has no ':' and no surrounding spaces")
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    line = f"{user}:{pbkdf2_hash(password)}"
    kept = [entry for entry in lines if entry.partition(":")[0].strip() != user]
    write_atomic(path, "\n".join([*kept, line]) + "\n")
    os.chmod(path, 0o600)
    return len(kept) != len(lines)


def _ab64(raw: bytes) -> str:
    """passlib's "adapted base64": standard base64 with ``.`` for ``+`` and no padding."""
    return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")


def _unab64(text: str) -> bytes:
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
