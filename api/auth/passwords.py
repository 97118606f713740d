"""Password hashing and the password policy.

New hashes are argon2id. bcrypt stays in the context only so that accounts imported with a
bcrypt hash can still log in; ``deprecated="auto"`` makes every non-argon2 hash (and argon2
hashes with outdated parameters) ask to be re-hashed on the next successful login.
"""

from __future__ import annotations

import re

from passlib.context import CryptContext

from pipeline.errors import InvalidInput

MIN_LENGTH = 10
MAX_LENGTH = 256
"""Longer input buys no security and would let a client make the server hash megabytes."""

_CONTEXT = CryptContext(schemes=["argon2", "bcrypt"], deprecated="auto")

# Verified when the login names no account, so a miss costs as long as a wrong password
# and response times do not reveal which accounts exist.
_DUMMY_HASH = _CONTEXT.hash("vidpipe-timing-equaliser")

_CLASSES = (re.compile(r"[a-z]"), re.compile(r"[A-Z]"), re.compile(r"[0-9]"), re.compile(r"[^A-Za-z0-9]"))


def hash_password(password: str) -> str:
    """Hash ``password`` with the preferred scheme (argon2id)."""
    return _CONTEXT.hash(password)


def verify_password(password: str, stored_hash: str) -> tuple[bool, str | None]:
    """Check ``password`` against ``stored_hash``.

    Returns:
        Whether it matched, and a new hash to store when the old one used a deprecated scheme
        or parameters (``None`` otherwise).
    """
    return _CONTEXT.verify_and_update(password, stored_hash)


def burn_verification(password: str) -> None:
    """Spend the time of one verification when there is no account to verify against."""
    _CONTEXT.verify(password, _DUMMY_HASH)


def check_policy(password: str, *, username: str, email: str) -> None:
    """Raise :class:`InvalidInput` (``auth.weak_password``) when ``password`` breaks the policy.

    The policy: at least 10 characters, characters from at least two classes (lower case,
    upper case, digits, other), and not the account's username or email.
    """
    problems = _policy_problems(password, username=username, email=email)
    if problems:
        raise InvalidInput("The password is too weak.", code="auth.weak_password", details={"problems": problems})


def _policy_problems(password: str, *, username: str, email: str) -> list[str]:
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"It must have at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        problems.append(f"It must have at most {MAX_LENGTH} characters.")
    if sum(1 for pattern in _CLASSES if pattern.search(password)) < 2:
        problems.append("It must mix at least two kinds of characters (lower case, upper case, digits, symbols).")
    folded = password.casefold()
    if folded in (username.casefold(), email.casefold(), email.split("@", 1)[0].casefold()):
        problems.append("It must not be the username or the email address.")
    return problems
