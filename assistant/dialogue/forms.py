"""Data-defined forms (assistant/data/forms/*.yaml): prompts, per-field validation, read-back,
corrections and cancellation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
import yaml

from assistant.core.privacy import mask_phone

FORMS_DIR = Path(__file__).resolve().parent.parent / "data" / "forms"
CANCEL_RE = re.compile(r"^(算了吧?|取消(登记|申请)?|不办了|不弄了|不要了|不用了|退出登记|cancel|never ?mind|forget it)(?=$|[，,。.!！?？\s])", re.I)
CONFIRM_RE = re.compile(r"^(确认|确定|对|对的|没问题|是的|可以|好的?|提交|confirm|yes|ok|correct)[。!！.]*$", re.I)
CORRECT_RE = re.compile(r"^(?:修改|改一下|改|更正|change|correct)\s*(.+)$", re.I)


class FieldError(Exception):
    def __init__(self, zh: str, en: str) -> None:
        super().__init__(zh)
        self.messages = {"zh": zh, "en": en}


@dataclass(frozen=True)
class FormField:
    name: str
    type: str
    required: bool
    prompt: dict[str, str]
    choices: dict[str, dict[str, Any]]
    min_length: int = 1

    def label(self, language: str) -> str:
        return FIELD_LABELS.get(self.name, {}).get(language, self.name)

    def parse(self, text: str) -> str:
        value = text.strip()
        if self.type == "choice":
            lowered = value.lower()
            for key, spec in self.choices.items():
                names = [spec.get("zh", ""), spec.get("en", ""), key, *spec.get("keywords", [])]
                if any(n and n.lower() in lowered for n in names):
                    return key
            options = "、".join(spec["zh"] for spec in self.choices.values())
            options_en = ", ".join(spec["en"] for spec in self.choices.values())
            raise FieldError(f"没听明白，请从这些里选一个：{options}。", f"Please choose one of: {options_en}.")
        if self.type == "phone":
            digits = re.sub(r"[\s\-()（）]", "", value)
            match = re.search(r"\+?\d{7,15}", digits)
            try:
                number = phonenumbers.parse(match.group(0) if match else digits, "CN")
            except phonenumbers.NumberParseException:
                number = None
            if (
                number is None
                or not phonenumbers.is_valid_number(number)
                or phonenumbers.number_type(number) not in (phonenumbers.PhoneNumberType.MOBILE,
                                                            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
            ):
                raise FieldError("这个手机号好像不对，请输入11位手机号，比如 13812345678。",
                                 "That mobile number doesn't look right. Please enter an 11-digit number like 13812345678.")
            return str(number.national_number)
        if len(value) < self.min_length:
            raise FieldError("请再说详细一点。", "Please give a little more detail.")
        return value[:500]

    def display(self, value: str, language: str) -> str:
        if self.type == "choice":
            return self.choices.get(value, {}).get(language, value)
        if self.type == "phone":
            return mask_phone(value)
        return value


FIELD_LABELS = {
    "dispute_type": {"zh": "纠纷类型", "en": "type"},
    "parties": {"zh": "对方", "en": "other party"},
    "address": {"zh": "地址", "en": "address"},
    "description": {"zh": "经过", "en": "what happened"},
    "urgency": {"zh": "紧急程度", "en": "urgency"},
    "phone": {"zh": "电话", "en": "phone"},
}


@dataclass(frozen=True)
class FormSpec:
    form_id: str
    title: dict[str, str]
    fields: tuple[FormField, ...]
    done: dict[str, str]

    @classmethod
    def load(cls, form_id: str, directory: Path = FORMS_DIR) -> FormSpec:
        data = yaml.safe_load((directory / f"{form_id}.yaml").read_text(encoding="utf-8"))
        fields = tuple(
            FormField(f["name"], f["type"], bool(f.get("required", True)), f["prompt"], f.get("choices") or {},
                      int(f.get("min_length", 1)))
            for f in data["fields"]
        )
        return cls(data["id"], data["title"], fields, data["done"])

    def field(self, name: str) -> FormField:
        return next(f for f in self.fields if f.name == name)

    def next_missing(self, values: dict[str, str]) -> FormField | None:
        return next((f for f in self.fields if f.required and f.name not in values), None)

    def prefill(self, text: str) -> dict[str, str]:
        """Values the opening message already gives (the dispute type, a phone number)."""
        values: dict[str, str] = {}
        for f in self.fields:
            if f.type == "choice" and f.name == "dispute_type":
                try:
                    values[f.name] = f.parse(text)
                except FieldError:
                    pass
        return values

    def find_field(self, text: str, language: str) -> FormField | None:
        lowered = text.lower()
        for f in self.fields:
            labels = {f.name, *FIELD_LABELS.get(f.name, {}).values()}
            if any(label.lower() in lowered for label in labels):
                return f
        return None

    def summary(self, values: dict[str, str], language: str) -> str:
        sep = "：" if language == "zh" else ": "
        return "\n".join(f"{f.label(language)}{sep}{f.display(values[f.name], language)}"
                         for f in self.fields if f.name in values)
