"""Password policy for worker accounts: at least 10 characters, not the username, and not one of
the common passwords shipped in common_passwords.txt (case-insensitive)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from assistant.core.errors import WeakPassword

MIN_LENGTH = 10
COMMON_PASSWORDS = Path(__file__).resolve().parent / "common_passwords.txt"


@cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().casefold() for line in lines if line.strip() and not line.startswith("#"))


def check_password(password: str, username: str | None = None) -> None:
    """Raises WeakPassword (422, with a Chinese message) when the password breaks the policy."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"密码至少{MIN_LENGTH}位。", f"The password needs at least {MIN_LENGTH} characters.")
    folded = password.casefold()
    if username and folded == username.casefold():
        raise WeakPassword("密码不能与用户名相同。", "The password must not be the username.")
    if folded in common_passwords() or len(set(password)) == 1:
        raise WeakPassword("这个密码太常见，很容易被猜到，请换一个。",
                           "This password is too common and easy to guess; please choose another.")
