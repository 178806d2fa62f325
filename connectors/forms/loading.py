"""Reading form YAML strictly. Administrators edit these files, so unknown keys are refused and
every mistake names the file and the place (``fields[2]（phone）.label.en``) in zh and en.

One field schema serves the dispute intake (assistant/data/forms/*.yaml, read by `load_form`)
and the procedures (connectors/services/procedures/*.yaml, which add their own top-level keys
and read their fields with `read_fields`):

    name, type, required, label {zh, en}, prompt {zh, en}; optional prefill (true/false)
    choice:  choices: {key: {zh, en, keywords: [..]}}   (the value stored is the key)
    number:  min, max
    date:    min_date, max_date: today, today+N, today-N (days) or YYYY-MM-DD
    text:    min_length (default 1), max_length (default 500)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from connectors.forms.errors import InvalidFormFile
from connectors.forms.field_types import date_bound
from connectors.forms.fields import FIELD_TYPES, Choice, FormField
from connectors.forms.spec import FormSpec

FORM_KEYS = frozenset({"id", "title", "fields", "done"})
FORM_REQUIRED_KEYS = frozenset({"id", "title", "fields"})
FIELD_KEYS = frozenset({
    "name", "type", "required", "label", "prompt", "choices", "prefill",
    "min", "max", "min_date", "max_date", "min_length", "max_length",
})
CHOICE_KEYS = frozenset({"zh", "en", "keywords"})
DEFAULT_MIN_LENGTH = 1
DEFAULT_MAX_LENGTH = 500


class SchemaReader:
    """Schema checks that name the file and the place of the mistake, in both languages.
    `error` is the exception raised (procedures raise their own subclass) and `document_zh`
    what the file is called in the Chinese message ("表单文件", "办事项目文件")."""

    def __init__(
        self, path: Path, *, error: type[InvalidFormFile] = InvalidFormFile, document_zh: str = "表单文件"
    ) -> None:
        self.path = path
        self.error = error
        self.document_zh = document_zh

    def fail(self, where: str, problem_zh: str, problem_en: str) -> InvalidFormFile:
        return self.error(
            f"{self.document_zh} {self.path.name} 的 {where}：{problem_zh}", f"{self.path.name}: {where}: {problem_en}"
        )

    def load(self) -> Any:
        try:
            return yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f"第{mark.line + 1}行" if mark else "YAML"
            raise self.fail(
                line,
                "格式错误，无法读取（含冒号、问号的文字请加引号或分行写）",
                f"malformed YAML ({exc.__class__.__name__})",
            ) from exc

    def mapping(self, value: Any, where: str, allowed: Iterable[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "应该是键值对", "must be a mapping")
        if allowed is not None and (extra := set(value) - set(allowed)):
            raise self.fail(where, f"有不认识的键 {sorted(extra)}", f"unknown keys {sorted(extra)}")
        return value

    def require(self, data: dict[str, Any], where: str, keys: Iterable[str]) -> None:
        missing = sorted(set(keys) - set(data))
        if missing:
            raise self.fail(where, f"缺少 {missing}", f"missing {missing}")

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            raise self.fail(where, "应该是非空文字", "must be non-empty text")
        return str(value).strip()

    def text_list(self, value: Any, where: str) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(where, "应该是列表", "must be a list")
        return [self.text(item, where) for item in value]

    def bilingual(self, value: Any, where: str) -> dict[str, str]:
        data = self.mapping(value, where, {"zh", "en"})
        return {lang: self.text(data.get(lang), f"{where}.{lang}") for lang in ("zh", "en")}

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "应该是 true 或 false", "must be true or false")
        return value

    def optional_int(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, "应该是整数", "must be an integer")
        return int(value)

    def optional_date_bound(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        try:
            # Checked against an arbitrary day: only the spelling matters here.
            date_bound(str(value), date.today())
        except ValueError:
            raise self.fail(
                where, "应该是 today、today+N 或 YYYY-MM-DD", "must be today, today+N, today-N or YYYY-MM-DD"
            ) from None
        return str(value)


def read_fields(reader: SchemaReader, value: Any, where: str = "fields") -> tuple[FormField, ...]:
    if not isinstance(value, list) or not value:
        raise reader.fail(where, "应该是非空列表", "must be a non-empty list")
    fields = tuple(read_field(reader, spec, f"{where}[{i}]") for i, spec in enumerate(value))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise reader.fail(where, "字段名重复", "duplicate field names")
    return fields


def read_field(reader: SchemaReader, spec: Any, where: str) -> FormField:
    data = reader.mapping(spec, where, FIELD_KEYS)
    name = reader.text(data.get("name"), f"{where}.name")
    where = f"{where}（{name}）"
    kind = data.get("type")
    if kind not in FIELD_TYPES:
        types = sorted(FIELD_TYPES)
        raise reader.fail(where, f"类型 {kind!r} 不在 {types} 之内", f"type {kind!r} is not one of {types}")
    choices = _read_choices(reader, data.get("choices") or {}, f"{where}.choices")
    if (kind == "choice") != bool(choices):
        raise reader.fail(
            where, "choice 类型必须有 choices，其他类型不能有", "choices are required for, and only for, choice fields"
        )
    min_length = reader.optional_int(data.get("min_length"), f"{where}.min_length")
    max_length = reader.optional_int(data.get("max_length"), f"{where}.max_length")
    return FormField(
        name=name,
        type=str(kind),
        required=reader.flag(data.get("required"), f"{where}.required"),
        label=reader.bilingual(data.get("label"), f"{where}.label"),
        prompt=reader.bilingual(data.get("prompt"), f"{where}.prompt"),
        choices=choices,
        min=reader.optional_int(data.get("min"), f"{where}.min"),
        max=reader.optional_int(data.get("max"), f"{where}.max"),
        min_date=reader.optional_date_bound(data.get("min_date"), f"{where}.min_date"),
        max_date=reader.optional_date_bound(data.get("max_date"), f"{where}.max_date"),
        min_length=DEFAULT_MIN_LENGTH if min_length is None else min_length,
        max_length=DEFAULT_MAX_LENGTH if max_length is None else max_length,
        prefill=reader.flag(data.get("prefill", False), f"{where}.prefill"),
    )


def _read_choices(reader: SchemaReader, value: Any, where: str) -> tuple[Choice, ...]:
    choices = []
    for key, raw_choice in reader.mapping(value, where).items():
        choice_where = f"{where}.{key}"
        choice = reader.mapping(raw_choice, choice_where, CHOICE_KEYS)
        choices.append(
            Choice(
                key=str(key),
                zh=reader.text(choice.get("zh"), f"{choice_where}.zh"),
                en=reader.text(choice.get("en"), f"{choice_where}.en"),
                keywords=tuple(reader.text_list(choice.get("keywords") or [], f"{choice_where}.keywords")),
            )
        )
    return tuple(choices)


def load_form(path: Path) -> FormSpec:
    """A standalone form file (id, title, fields, optional done), checked strictly."""
    reader = SchemaReader(Path(path))
    data = reader.mapping(reader.load(), "顶层", FORM_KEYS)
    reader.require(data, "顶层", FORM_REQUIRED_KEYS)
    return FormSpec(
        id=reader.text(data["id"], "id"),
        title=reader.bilingual(data["title"], "title"),
        fields=read_fields(reader, data["fields"]),
        done=reader.bilingual(data["done"], "done") if data.get("done") is not None else None,
    )
