"""The one form engine (connectors.forms) behind the dispute intake and every procedure: the
field-type registry, choice matching that reads English by whole words and prefers the longer
term ("不急" is not "急"), mobile numbers inside a sentence, corrections, read-backs with masked
numbers, prefill from the opening message, strict YAML, and the shipped form files."""

from __future__ import annotations

import string
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from assistant.core.errors import LinliError
from assistant.core.settings import PROJECT_ROOT
from connectors.forms import (
    FIELD_TYPES,
    MESSAGES,
    Choice,
    FieldError,
    FormField,
    FormSpec,
    InvalidFormFile,
    load_form,
    register_field_type,
)
from connectors.forms.errors import load_messages
from connectors.services.procedures import DEFAULT_DIR, InvalidProcedureFile, load_procedures

TODAY = date(2026, 11, 23)
DISPUTE_FORM = PROJECT_ROOT / "assistant" / "data" / "forms" / "dispute_mediation.yaml"
BUILT_IN_TYPES = {"name", "cn_id", "cn_mobile", "date", "address", "choice", "number", "text"}
ID_NUMBER = "650202193401010022"


@pytest.fixture(scope="module")
def dispute() -> FormSpec:
    return load_form(DISPUTE_FORM)


def reading(form: FormSpec, field: str, answer: str) -> str | int | date:
    return form.field(field).parse(answer, TODAY)


def refusal(form: FormSpec, field: str, answer: str) -> FieldError:
    with pytest.raises(FieldError) as caught:
        form.field(field).parse(answer, TODAY)
    assert caught.value.field == field
    return caught.value


def minimal_form_yaml(field: str) -> str:
    return f"id: tiny\ntitle: {{zh: 小表, en: Tiny form}}\nfields:\n{field}"


NAME_FIELD = """  - name: who
    type: name
    required: true
    label: {zh: 姓名, en: name}
    prompt: {zh: "您叫什么？", en: "Your name?"}
"""


# ---- the field-type registry --------------------------------------------------------------------


def test_the_registry_holds_the_built_in_types():
    assert set(FIELD_TYPES) == BUILT_IN_TYPES


@pytest.fixture
def flat_number_type() -> Iterator[str]:
    """A type registered for one test, taken out again so the registry stays as shipped."""

    @register_field_type("flat_number")
    def parse_flat_number(field: FormField, raw: str, today: date) -> str:
        if not raw.isdigit():
            raise field.error("number_not_integer")
        return raw

    yield "flat_number"
    del FIELD_TYPES["flat_number"]


def test_a_registered_type_is_usable_in_form_yaml(tmp_path, flat_number_type):
    field = NAME_FIELD.replace("type: name", f"type: {flat_number_type}")
    (tmp_path / "tiny.yaml").write_text(minimal_form_yaml(field), encoding="utf-8")
    form = load_form(tmp_path / "tiny.yaml")
    assert reading(form, "who", "602") == "602"
    assert "整数" in refusal(form, "who", "六零二").message("zh")


def test_a_type_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_field_type("text")(FIELD_TYPES["text"])


# ---- choices ------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["I don't know", "I don’t know"])
def test_i_dont_know_is_not_urgent_the_resident_is_asked_again(dispute, answer):
    """Substring matching found "now" (urgent) in "know"."""
    error = refusal(dispute, "urgency", answer)
    assert error.message("en") == "Sorry, I did not catch the urgency. Please choose one of: urgent, normal."
    assert error.message("zh") == "紧急程度没听明白，请从这些里选一个：紧急、一般。"


def test_her_care_is_not_parking(dispute):
    """Substring matching found "car" (parking) in "care"."""
    with pytest.raises(FieldError):
        reading(dispute, "dispute_type", "it's about her care")


def test_a_person_upstairs_is_not_family(dispute):
    """Substring matching found "son" (family) in "person"."""
    with pytest.raises(FieldError):
        reading(dispute, "dispute_type", "a person upstairs")


@pytest.mark.parametrize(("answer", "key"), [
    ("不急", "normal"), ("不着急", "normal"), ("不紧急", "normal"), ("不是很急", "normal"), ("一般", "normal"),
    ("not urgent", "normal"), ("Not urgent at all", "normal"), ("no rush", "normal"), ("normal", "normal"),
    ("紧急", "urgent"), ("挺急的", "urgent"), ("马上要出事了", "urgent"), ("urgent!", "urgent"),
    ("right now please", "urgent"), ("URGENT", "urgent"),
])
def test_urgency_prefers_the_longer_term(dispute, answer, key):
    """"不急" contains "急" and "not urgent" contains "urgent": the longer term wins."""
    assert reading(dispute, "urgency", answer) == key


@pytest.mark.parametrize(("answer", "key"), [
    ("楼上天天半夜吵", "neighbour_noise"),
    ("漏水", "leak"),
    ("楼上漏水把我家泡了，帮我找人调解", "leak"),
    ("拖欠工资", "wage_arrears"),
    ("老板三个月没发工钱", "wage_arrears"),
    ("停车位被占了", "parking"),
    ("My upstairs neighbour makes loud noise every night", "neighbour_noise"),
    ("my son won't visit me", "family"),
    ("the boss didn’t pay my wages", "wage_arrears"),
    ("someone parked a car in front of my door", "parking"),
])
def test_dispute_types(dispute, answer, key):
    assert reading(dispute, "dispute_type", answer) == key


def test_two_choices_named_at_once_ask_which_one(dispute):
    error = refusal(dispute, "urgency", "现在不急")
    assert error.message("zh") == "您说的紧急程度可能是紧急、一般，请说是哪一个。"
    assert "did you mean urgent, normal?" in error.message("en")


def test_every_choice_of_every_form_is_read_back_from_its_own_names_and_keywords(dispute):
    """A keyword that another choice also claims would make the resident's word ambiguous."""
    forms = [dispute, *(p.form for p in load_procedures().values())]
    for form in forms:
        for field in form.fields:
            for choice in field.choices:
                for term in (choice.key, choice.zh, choice.en, *choice.keywords):
                    assert field.parse(term, TODAY) == choice.key, (form.id, field.name, term)


def test_choice_label_follows_the_language():
    choice = Choice("leak", "漏水渗水", "water leak", ("漏水",))
    assert (choice.label("zh"), choice.label("en"), choice.label("ug")) == ("漏水渗水", "water leak", "漏水渗水")


# ---- mobile numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["我的电话是138 1234 5678", "13812345678", "+86 138-1234-5678",
                                    "我住3号楼，电话13812345678", "my number is 138 1234 5678"])
def test_one_mobile_number_in_a_short_sentence(dispute, answer):
    assert reading(dispute, "phone", answer) == "13812345678"


def test_mobile_errors_name_the_field(dispute):
    assert refusal(dispute, "phone", "138123").message("zh") == "电话应该是11位，您填了6位，请核对。"
    too_short = refusal(dispute, "phone", "我的电话是1381234567")
    assert too_short.message("en") == "The phone should have 11 digits; you gave 10."
    assert "一个" in refusal(dispute, "phone", "13812345678或者13912345678").message("zh")
    assert "只能填数字" in refusal(dispute, "phone", "没有电话").message("zh")
    assert "座机" in refusal(dispute, "phone", "01012345678").message("zh")


# ---- the form as a whole ------------------------------------------------------------------------


@pytest.mark.parametrize(("correction", "field"), [
    ("改电话13812345678", "phone"),
    ("修改 电话 13900001111", "phone"),
    ("修改 紧急程度 紧急", "urgency"),
    ("修改 地址 幸福小区5栋101", "address"),
    ("change phone 13900001111", "phone"),
    ("change the other party to the landlord", "parties"),
    ("Change URGENCY to urgent", "urgency"),
    ("改一下", None),
    ("my telephone", None),  # Latin labels match whole words: "phone" is not in "telephone"
])
def test_find_field_names_the_corrected_field(dispute, correction, field):
    found = dispute.find_field(correction)
    assert (found.name if found else None) == field


def test_find_field_prefers_the_longest_name():
    procedure = load_procedures()["elderly_allowance"].form
    assert procedure.find_field("改一下手机号码 13912345678").name == "mobile"
    assert procedure.find_field("身份证号写错了").name == "applicant_id"


def test_summary_reads_back_labels_and_masks_numbers(dispute):
    values = {"dispute_type": "leak", "parties": "楼上602的住户", "urgency": "normal", "phone": "13812345678"}
    assert dispute.summary(values, "zh") == "纠纷类型：漏水渗水\n对方：楼上602的住户\n紧急程度：一般\n电话：138****5678"
    assert dispute.summary(values, "en") == (
        "type: water leak\nother party: 楼上602的住户\nurgency: normal\nphone: 138****5678"
    )


def test_summary_masks_id_numbers():
    form = load_procedures()["elderly_allowance"].form
    summary = form.summary({"applicant_name": "王秀英", "applicant_id": ID_NUMBER}, "zh")
    assert summary == "姓名：王秀英\n身份证号：650202********0022"
    assert ID_NUMBER not in summary


def test_prefill_reads_only_fields_marked_for_it(dispute):
    assert dispute.prefill("楼上漏水把我家泡了，帮我找人调解", TODAY) == {"dispute_type": "leak"}
    assert dispute.prefill("My upstairs neighbour makes loud noise every night, please help", TODAY) == {
        "dispute_type": "neighbour_noise"}
    # a phone number in the opening message is not prefilled: the phone field is not marked
    assert dispute.prefill("楼上漏水，我电话13812345678", TODAY) == {"dispute_type": "leak"}


@pytest.mark.parametrize("opening", ["你好，我想找人调解", "楼上漏水，还天天半夜吵"])
def test_prefill_gives_nothing_for_an_unmatched_or_ambiguous_opening(dispute, opening):
    assert dispute.prefill(opening, TODAY) == {}


def test_next_missing_follows_the_form_order(dispute):
    assert dispute.next_missing({}).name == "dispute_type"
    assert dispute.next_missing({"dispute_type": "leak", "parties": "x"}).name == "address"
    assert dispute.next_missing({f.name: "x" for f in dispute.fields}) is None


def test_validate_reports_every_problem_and_unknown_keys(dispute):
    cleaned, errors = dispute.validate(
        {"dispute_type": "漏水", "parties": "楼上", "description": "吵", "urgency": "不急", "password": "x"}, TODAY
    )
    assert cleaned == {"dispute_type": "leak", "parties": "楼上", "urgency": "normal"}
    assert {e.field: e.message("zh") for e in errors} == {
        "address": "还没有填写地址。",
        "description": "经过请再说详细一点，至少4个字。",
        "phone": "还没有填写电话。",
        "password": "“纠纷调解登记”没有“password”这一项。",
    }
    assert next(e for e in errors if e.field == "password").message("en") == (
        "Dispute mediation request has no field 'password'."
    )


def test_an_empty_answer_asks_for_the_field(dispute):
    assert refusal(dispute, "parties", "  ").message("en") == "Please give the other party."


# ---- field errors and their wording -------------------------------------------------------------


def test_field_error_speaks_both_languages_and_flags_work_for_a_person():
    form = load_procedures()["elderly_allowance"].form
    error = refusal(form, "applicant_id", "610104620927690")
    assert isinstance(error, Exception) and error.needs_worker
    assert "15位" in error.message("zh") and "talk to a person" in error.message("en")
    assert str(error) == error.message("zh")


def test_a_message_id_missing_from_the_wording_file_is_a_programming_error():
    with pytest.raises(KeyError, match="no_such_message"):
        FieldError("phone", "no_such_message")


def test_every_message_has_both_languages_with_the_same_placeholders():
    fields = string.Formatter()
    for message_id, sentences in MESSAGES.items():
        names = [{n for _, n, _, _ in fields.parse(sentences[lang]) if n} for lang in ("zh", "en")]
        assert names[0] == names[1], message_id


def test_a_wording_file_whose_languages_disagree_is_refused(tmp_path):
    path = tmp_path / "messages.yaml"
    path.write_text('required:\n  zh: "请填写{label}。"\n  en: "Please give it."\n', encoding="utf-8")
    with pytest.raises(InvalidFormFile, match="required"):
        load_messages(path)


# ---- strict YAML --------------------------------------------------------------------------------


def write_form(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("broken", "place"), [
    (minimal_form_yaml(NAME_FIELD + "    colour: red\n"), "fields[0]：有不认识的键 ['colour']"),
    (minimal_form_yaml(NAME_FIELD.replace("    label: {zh: 姓名, en: name}\n", "")), "fields[0]（who）.label"),
    (minimal_form_yaml(NAME_FIELD.replace("type: name", "type: phone")), "fields[0]（who）"),
    (minimal_form_yaml(NAME_FIELD.replace("required: true", "required: yes please")), "fields[0]（who）.required"),
    (minimal_form_yaml(NAME_FIELD.replace("type: name", "type: choice")), "fields[0]（who）"),
    (minimal_form_yaml(NAME_FIELD) + "owner: me\n", "顶层"),
    ("id: tiny\ntitle: {zh: 小表, en: Tiny form}\n", "顶层"),
    (minimal_form_yaml(NAME_FIELD + "    prompt: {zh: a: b}\n"), "行"),
])
def test_a_form_file_that_breaks_the_schema_names_the_file_and_the_place(tmp_path, broken, place):
    with pytest.raises(InvalidFormFile) as caught:
        load_form(write_form(tmp_path, broken))
    assert caught.value.message("zh").startswith("表单文件 tiny.yaml 的 ")
    assert place in caught.value.message("zh")
    assert caught.value.message("en").startswith("tiny.yaml: ")
    assert isinstance(caught.value, LinliError) and caught.value.http_status == 500


def test_procedure_files_raise_their_own_subclass(tmp_path):
    source = (DEFAULT_DIR / "appointment.yaml").read_text(encoding="utf-8")
    (tmp_path / "appointment.yaml").write_text(source.replace("    required: true\n", "    required: 1\n", 1),
                                               encoding="utf-8")
    with pytest.raises(InvalidProcedureFile) as caught:
        load_procedures(tmp_path)
    assert isinstance(caught.value, InvalidFormFile)
    assert caught.value.code == "invalid_procedure_file"
    assert caught.value.message("zh").startswith("办事项目文件 appointment.yaml 的 fields[0]（applicant_name）")


# ---- the shipped forms --------------------------------------------------------------------------


def test_the_dispute_form_loads_with_its_labels_and_done_sentence(dispute):
    assert dispute.id == "dispute_mediation"
    assert dispute.title == {"zh": "纠纷调解登记", "en": "Dispute mediation request"}
    assert [(f.name, f.label["zh"], f.label["en"]) for f in dispute.fields] == [
        ("dispute_type", "纠纷类型", "type"),
        ("parties", "对方", "other party"),
        ("address", "地址", "address"),
        ("description", "经过", "what happened"),
        ("urgency", "紧急程度", "urgency"),
        ("phone", "电话", "phone"),
    ]
    assert dispute.field("phone").type == "cn_mobile"
    assert dispute.field("description").min_length == 4
    assert [f.name for f in dispute.fields if f.prefill] == ["dispute_type"]
    assert all(f.required and f.prompt["zh"] and f.prompt["en"] for f in dispute.fields)
    assert dispute.done is not None
    assert "{ticket_id}" in dispute.done["zh"] and "{ticket_id}" in dispute.done["en"]


def test_every_procedure_file_loads_on_the_same_engine():
    procedures = load_procedures()
    assert len(procedures) == len(list(DEFAULT_DIR.glob("*.yaml"))) >= 6
    for procedure in procedures.values():
        assert isinstance(procedure.form, FormSpec)
        assert {f.type for f in procedure.fields} <= BUILT_IN_TYPES
        assert procedure.form.done is None


def test_display_shows_labels_masks_and_plain_text(dispute):
    assert dispute.field("urgency").display("urgent", "en") == "urgent"
    assert dispute.field("urgency").display("urgent", "zh") == "紧急"
    assert dispute.field("phone").display("13812345678", "zh") == "138****5678"
    assert dispute.field("parties").display("物业公司", "en") == "物业公司"
    date_field = FormField("day", "date", True, {"zh": "日期", "en": "date"}, {"zh": "哪天？", "en": "Which day?"})
    assert date_field.display(date(2026, 11, 30), "zh") == "2026-11-30"
