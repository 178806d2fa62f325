"""Password policy for worker accounts: at least 10 characters, not the username, not one of the
common passwords shipped in common_passwords.txt (case-insensitive), and hard to guess by
zxcvbn's estimate (score 3 of 4: at least ~10^8 guesses), which sees through what a length rule
does not: `aaaaaaaaab` (a repeat), `Linli123456` (the product's name and a sequence)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from zxcvbn import zxcvbn  # type: ignore[import-untyped]

from assistant.core.errors import WeakPassword

MIN_LENGTH = 10
# zxcvbn's score: 3 is "safely unguessable: moderate protection from offline slow-hash scenario".
MIN_SCORE = 3
# Words a guesser of a Linli account tries first, beside the username.
GUESSABLE_WORDS = ("linli", "邻里", "shequ", "社区", "xiaoke", "小克", "admin", "worker", "karamay")
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
    # zxcvbn's matching is quadratic in length; the first 100 characters decide a long passphrase.
    estimate = zxcvbn(password[:100], user_inputs=[*(GUESSABLE_WORDS), *([username] if username else [])])
    if estimate["score"] < MIN_SCORE:
        raise WeakPassword("这个密码容易被猜到（重复的字、连续的数字或键盘顺序、用户名或系统名），"
                           "请用几个不相关的词加数字或符号，例如“晴天-书包-2031”。",
                           "This password is easy to guess (repeats, sequences, keyboard runs, the username "
                           "or the product's name); use a few unrelated words with digits or symbols.")
