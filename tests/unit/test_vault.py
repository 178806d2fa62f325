"""The vault: ID and phone numbers encrypted at rest, readable old rows, key rotation, the refusal
of the development key, and private file modes."""

from __future__ import annotations

import os
import stat

import pytest
from pydantic import SecretStr

from assistant.core.privacy import contains_pii, mask_data, mask_pii, mask_secret, private_file, restrict_tree
from assistant.core.settings import PrivacySettings
from assistant.core.vault import (
    DEVELOPMENT_KEY,
    PREFIX,
    DevelopmentKeyRefused,
    InvalidDataKey,
    UndecryptableValue,
    Vault,
    generate_key,
    is_encrypted,
    refuse_development_key,
)

ID = "650202198512010036"
PHONE = "13812345678"


@pytest.fixture(scope="module")
def vault() -> Vault:
    return Vault([generate_key()])


def test_a_value_round_trips_and_is_recognisable(vault):
    sealed = vault.encrypt_value(PHONE)
    assert sealed.startswith(PREFIX) and PHONE not in sealed and is_encrypted(sealed)
    assert vault.decrypt_value(sealed) == PHONE
    assert vault.encrypt_value(sealed) == sealed  # never encrypted twice
    assert vault.decrypt_value(PHONE) == PHONE  # a row written before encryption reads as it is


def test_form_data_by_field_kind_and_by_pattern(vault):
    data = {"applicant_id": ID, "phone": PHONE, "name": "王秀英", "age": 92, "landline": "0990-6221234",
            "description": f"楼上漏水，我电话{PHONE}", "nested": {"ids": [ID, "3栋"]}}
    sealed = vault.encrypt_fields(data, sensitive={"landline"})
    assert is_encrypted(sealed["applicant_id"]) and is_encrypted(sealed["phone"])
    assert is_encrypted(sealed["landline"])  # by kind: the pattern does not know landlines
    assert is_encrypted(sealed["description"])  # a number inside free text: the whole answer
    assert sealed["name"] == "王秀英" and sealed["age"] == 92
    assert is_encrypted(sealed["nested"]["ids"][0]) and sealed["nested"]["ids"][1] == "3栋"
    assert vault.decrypt_fields(sealed) == data
    masked = vault.masked_fields(sealed, sensitive={"landline"})
    assert masked["applicant_id"] == "650202********0036" and masked["phone"] == "138****5678"
    assert masked["description"] == "楼上漏水，我电话138****5678" and masked["landline"] == "099*****1234"


def test_another_key_cannot_read_and_rotation_keeps_old_rows(vault):
    old_key, new_key = generate_key(), generate_key()
    sealed = Vault([old_key]).encrypt_value(ID)
    with pytest.raises(UndecryptableValue):
        Vault([new_key]).decrypt_value(sealed)
    rotated = Vault.from_settings(PrivacySettings(data_key=SecretStr(new_key), previous_keys=[SecretStr(old_key)]))
    assert rotated.decrypt_value(sealed) == ID
    fresh = rotated.encrypt_value(ID)
    assert Vault([new_key]).decrypt_value(fresh) == ID  # new writes use the new key
    with pytest.raises(UndecryptableValue):
        Vault([old_key]).decrypt_value(fresh)
    assert Vault([new_key]).masked_fields({"phone": sealed}) == {"phone": "****"}


def test_a_malformed_key_is_refused():
    with pytest.raises(InvalidDataKey):
        Vault.from_settings(PrivacySettings(data_key=SecretStr("not-a-key")))


def test_the_development_key_only_in_development():
    with pytest.raises(DevelopmentKeyRefused) as refused:
        refuse_development_key(PrivacySettings())
    assert "linli keygen" in refused.value.message("en") and "LINLI_PRIVACY__DATA_KEY" in refused.value.message("zh")
    with pytest.raises(DevelopmentKeyRefused):
        refuse_development_key(PrivacySettings(data_key=SecretStr(DEVELOPMENT_KEY)))
    refuse_development_key(PrivacySettings(development=True))
    refuse_development_key(PrivacySettings(data_key=SecretStr(generate_key())))
    assert Vault.from_settings(PrivacySettings()).uses_development_key


@pytest.mark.parametrize(("text", "masked"), [
    ("电话138 1234 5678", "电话138 **** 5678"),
    ("+8613812345678", "+86138****5678"),
    (f"身份证{ID}，电话{PHONE}", "身份证650202********0036，电话138****5678"),
    ("3栋502室，2024年", "3栋502室，2024年"),
    # However the digits are written (issue 28, hole 12): full-width, dotted, spaced one by one,
    # in Chinese numerals as a phone number is read out, an ID in numerals with a full-width X.
    ("电话１３８１２３４５６７８", "电话１３８****５６７８"),
    ("138.1234.5678", "138.****.5678"),
    ("1 3 8 1 2 3 4 5 6 7 8", "1 3 8 * * * * 5 6 7 8"),
    ("我的手机是幺三八幺二三四五六七八", "我的手机是幺三八****五六七八"),
    ("身份证六五〇二〇二一九五〇〇一〇一〇〇三Ｘ", "身份证六五〇二〇二********〇〇三Ｘ"),
    ("138－1234－5678，１３９ ２２２２ ３３３３", "138－****－5678，１３９ **** ３３３３"),
    # Not personal data: dates, amounts, a case number, an ordinary count in numerals.
    ("2024年1月3日申请，补贴1500元，编号2024-0001-0002", "2024年1月3日申请，补贴1500元，编号2024-0001-0002"),
    ("一二三四五六七八九十个人", "一二三四五六七八九十个人"),
])
def test_masking(text, masked):
    assert mask_pii(text) == masked
    assert contains_pii(text) == (text != masked)


def test_masking_known_secrets_and_data():
    assert mask_secret("650202851201003") == "650********1003"  # a legacy 15-digit card
    assert mask_secret("12") == "****"
    assert mask_data({"a": [PHONE], "b": 3}) == {"a": ["138****5678"], "b": 3}


def test_private_files_and_trees(tmp_path):
    path = private_file(tmp_path / "new" / "db.sqlite")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    loose = tmp_path / "index"
    (loose / "sub").mkdir(parents=True)
    (loose / "sub" / "bm25.json").write_text("{}")
    os.chmod(loose / "sub" / "bm25.json", 0o644)
    restrict_tree(loose)
    assert stat.S_IMODE(os.stat(loose / "sub" / "bm25.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(loose / "sub").st_mode) == 0o700
