"""Personal data at rest: ID numbers and phone numbers are stored encrypted (Fernet, a key from
`settings.privacy.data_key`), never in the clear.

A stored encrypted value is a string starting with ``enc:v1:`` followed by a Fernet token, so a
row written before encryption (plaintext) still reads, and nothing is encrypted twice. Which
values of a dict (form data, conversation state) are personal is decided by the field's kind
where the caller knows it (a form's ``cn_id`` and ``cn_mobile`` fields, `SENSITIVE_FIELD_TYPES`)
and otherwise by pattern (an 18-digit resident ID number or a mainland mobile number anywhere in
the string: the whole string is encrypted).

`linli serve`, `linli worker` and the API refuse the built-in development key unless
``LINLI_PRIVACY__DEVELOPMENT=true`` (`refuse_development_key`)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from assistant.core.errors import LinliError
from assistant.core.privacy import contains_pii, mask_pii, mask_secret
from assistant.core.settings import PrivacySettings

log = logging.getLogger("linli.privacy")

PREFIX = "enc:v1:"
# Anyone can read this key in the source: it only keeps development databases from holding
# plain text. `refuse_development_key` keeps it out of production.
DEVELOPMENT_KEY = "bGlubGktZGV2ZWxvcG1lbnQta2V5LW5vdC1zZWNyZXQ="  # base64("linli-development-key-not-secret")
# Form field types whose every value is personal data (connectors/forms/field_types.py).
SENSITIVE_FIELD_TYPES = frozenset({"cn_id", "cn_mobile"})
KEYGEN_HINT_ZH = ("请生成密钥：linli keygen（或 python -c \"from cryptography.fernet import Fernet; "
                  "print(Fernet.generate_key().decode())\"），再设置 LINLI_PRIVACY__DATA_KEY；"
                  "仅在开发环境可设置 LINLI_PRIVACY__DEVELOPMENT=true。")
KEYGEN_HINT_EN = ("Make a key with `linli keygen` (or python -c \"from cryptography.fernet import Fernet; "
                  "print(Fernet.generate_key().decode())\") and set LINLI_PRIVACY__DATA_KEY; only a "
                  "development machine may set LINLI_PRIVACY__DEVELOPMENT=true instead.")


class InvalidDataKey(LinliError):
    code = "invalid_data_key"
    http_status = 503


class DevelopmentKeyRefused(LinliError):
    code = "development_key_refused"
    http_status = 503


class UndecryptableValue(LinliError):
    """A stored value the configured keys cannot open: the key was changed without keeping the
    old one in `previous_keys`, or the row was altered."""

    code = "undecryptable"
    http_status = 503


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidDataKey("LINLI_PRIVACY__DATA_KEY 不是有效的 Fernet 密钥（32字节的 urlsafe base64）。"
                             + KEYGEN_HINT_ZH,
                             "LINLI_PRIVACY__DATA_KEY is not a Fernet key (32 urlsafe base64 bytes). "
                             + KEYGEN_HINT_EN) from None


class Vault:
    """Encrypts with the first key; decrypts with any (key rotation: the new key first, the old
    ones after it until every row is rewritten)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise InvalidDataKey("没有数据密钥。" + KEYGEN_HINT_ZH, "No data key. " + KEYGEN_HINT_EN)
        self._fernet = MultiFernet([_fernet(k) for k in keys])
        self.uses_development_key = keys[0] == DEVELOPMENT_KEY

    @classmethod
    def from_settings(cls, privacy: PrivacySettings) -> Vault:
        primary = privacy.data_key.get_secret_value() if privacy.data_key else ""
        keys = [primary or DEVELOPMENT_KEY, *(k.get_secret_value() for k in privacy.previous_keys)]
        return cls([k for k in keys if k])

    @classmethod
    def development(cls) -> Vault:
        return cls([DEVELOPMENT_KEY])

    # ---- one value ----------------------------------------------------------------------------

    def encrypt_value(self, value: str) -> str:
        if is_encrypted(value):
            return value
        return PREFIX + self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt_value(self, value: str) -> str:
        """The plain value; a value that was never encrypted (an older row) as it is."""
        if not is_encrypted(value):
            return value
        try:
            return self._fernet.decrypt(value[len(PREFIX):].encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise UndecryptableValue("有加密的个人信息无法解密：数据密钥不对。请检查 LINLI_PRIVACY__DATA_KEY"
                                     "（换过密钥时，把旧密钥放进 LINLI_PRIVACY__PREVIOUS_KEYS）。",
                                     "An encrypted value cannot be decrypted with the configured key: check "
                                     "LINLI_PRIVACY__DATA_KEY (after a key change, keep the old key in "
                                     "LINLI_PRIVACY__PREVIOUS_KEYS).") from None

    # ---- values inside a dict (form data, conversation state) ------------------------------------

    def encrypt_fields(self, data: Mapping[str, Any], sensitive: Collection[str] = ()) -> dict[str, Any]:
        """A copy with the personal values encrypted: every non-empty string under a key named in
        `sensitive` (the form's cn_id/cn_mobile fields), and any string holding an ID or mobile
        number; nested dicts and lists are walked (their keys are not form fields)."""
        return {k: self._seal(v, k in sensitive) for k, v in data.items()}

    def decrypt_fields(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._open(v) for k, v in data.items()}

    def masked_fields(self, data: Mapping[str, Any], sensitive: Collection[str] = ()) -> dict[str, Any]:
        """What someone who may not see the full values reads: decrypted, then masked (a value
        that cannot be decrypted shows as ****)."""
        return {k: self._mask(v, k in sensitive) for k, v in data.items()}

    def _seal(self, value: Any, sensitive: bool) -> Any:
        if isinstance(value, str):
            return self.encrypt_value(value) if value and (sensitive or contains_pii(value)) else value
        if isinstance(value, Mapping):
            return {k: self._seal(v, False) for k, v in value.items()}
        if isinstance(value, list):
            return [self._seal(v, False) for v in value]
        return value

    def _open(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.decrypt_value(value)
        if isinstance(value, Mapping):
            return {k: self._open(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._open(v) for v in value]
        return value

    def _mask(self, value: Any, sensitive: bool) -> Any:
        if isinstance(value, str):
            try:
                plain = self.decrypt_value(value)
            except UndecryptableValue:
                return "****"
            return mask_secret(plain) if sensitive else mask_pii(plain)
        if isinstance(value, Mapping):
            return {k: self._mask(v, False) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask(v, False) for v in value]
        return value


def refuse_development_key(privacy: PrivacySettings) -> None:
    """Raise unless a real data key is set or this is a development machine."""
    if privacy.development:
        return
    vault = Vault.from_settings(privacy)  # also refuses a malformed key
    if vault.uses_development_key:
        raise DevelopmentKeyRefused("拒绝启动：没有设置数据密钥，内置的开发密钥不能用于正式环境。" + KEYGEN_HINT_ZH,
                                    "Refusing to start: no data key is set, and the built-in development key is "
                                    "not for production. " + KEYGEN_HINT_EN)


__all__ = ["DEVELOPMENT_KEY", "PREFIX", "SENSITIVE_FIELD_TYPES", "DevelopmentKeyRefused", "InvalidDataKey",
           "UndecryptableValue", "Vault", "generate_key", "is_encrypted", "refuse_development_key"]
