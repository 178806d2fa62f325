"""Government procedures as data: the YAML loads, answers are checked field by field with
messages that name the field, and eligibility is decided from the ID's birth date on a fixed day,
reading benefit tables through the `BenefitTables` seam (the `benefit_tables` fixture in memory,
the knowledge base's answerer in the app)."""

from __future__ import annotations

import ast
import json
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from stdnum.cn import ric

from assistant.core.settings import KB_PACKAGE_DIR
from connectors.forms import FieldError, FormField
from connectors.services.procedures import (
    DEFAULT_DIR,
    FIELD_TYPES,
    BenefitTableRule,
    Eligibility,
    InvalidProcedureFile,
    MissingBenefitTable,
    UnknownProcedure,
    get_procedure,
    load_procedures,
)
from knowledge_base.answering import GroundedAnswerer
from knowledge_base.benefits import BenefitTables, InMemoryBenefitTables
from knowledge_base.loaders import load_file

TODAY = date(2026, 11, 23)
VECTORS = Path("/work/shared/data/id_phone/cn_id_vectors.jsonl")
PROCEDURE_IDS = {
    "elderly_allowance",
    "pension_certification",
    "unemployment_registration",
    "medical_insurance_enrolment",
    "legal_aid",
    "appointment",
}
SQL = "张三'; DROP TABLE x;--"
HTML = "<script>alert(1)</script>"


def make_id(birth: str, region: str = "650202", sequence: str = "001") -> str:
    """An 18-digit ID with a correct check digit (Karamay, Dushanzi district by default)."""
    body = region + birth + sequence
    return body + ric.calc_check_digit(body + "0")


def field_of(procedure_id: str, name: str) -> FormField:
    return get_procedure(procedure_id).form.field(name)


def rejection(spec: FormField, raw: str) -> FieldError:
    with pytest.raises(FieldError) as caught:
        spec.parse(raw, TODAY)
    assert caught.value.field == spec.name
    return caught.value


def _vectors(module: str, function: str) -> list:
    if not VECTORS.exists():
        reason = f"ID vectors not found at {VECTORS}"
        print(reason)
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
    rows = [json.loads(line) for line in VECTORS.read_text(encoding="utf-8").splitlines() if line.strip()]
    # id-validator's strict mode (county must exist in the birth year) is not Linli's policy.
    return [
        pytest.param(r, id=r["input"])
        for r in rows
        if r["module"] == module and r["function"] == function and not r.get("strict")
    ]


# ---- the procedure files ----------------------------------------------------------------------


def test_all_six_procedures_load_with_allowed_field_types():
    procedures = load_procedures()
    assert set(procedures) == PROCEDURE_IDS
    corpus = {p.stem for p in (KB_PACKAGE_DIR / "corpus" / "zh").glob("*.md")}
    for procedure in procedures.values():
        assert len(procedure.fields) >= 3, procedure.id
        assert {f.type for f in procedure.fields} <= set(FIELD_TYPES), procedure.id
        assert procedure.title["zh"] and procedure.title["en"]
        assert procedure.doc_id in corpus, procedure.doc_id
        assert procedure.materials["zh"] and procedure.materials["en"], procedure.id
        for spec in procedure.fields:
            assert spec.label["zh"] and spec.prompt["zh"] and spec.prompt["en"], (procedure.id, spec.name)
            assert (spec.type == "choice") == bool(spec.choices), (procedure.id, spec.name)


def test_benefit_table_rules_point_at_tables_in_the_corpus(benefit_tables):
    rules = [r for p in load_procedures().values() for r in p.eligibility if isinstance(r, BenefitTableRule)]
    assert rules
    for rule in rules:
        assert benefit_tables.benefit_table(rule.table).brackets
        if rule.table_en:
            assert benefit_tables.benefit_table(rule.table_en).language == "en"


def test_a_procedure_is_a_form_with_materials_and_rules():
    procedure = get_procedure("elderly_allowance")
    assert procedure.id == procedure.form.id == "elderly_allowance"
    assert procedure.title is procedure.form.title and procedure.fields is procedure.form.fields
    assert procedure.form.done is None


def test_legal_aid_points_to_the_karamay_legal_cost_insurance():
    assert "kmy-legal-cost-insurance" in get_procedure("legal_aid").description["zh"]


def test_describe_lists_fields_and_choice_keys():
    described = get_procedure("appointment").describe()
    assert described["id"] == "appointment"
    assert described["title"]["zh"] == "社区中心预约办事"
    slots = next(f for f in described["fields"] if f["name"] == "time_slot")
    assert slots == {"name": "time_slot", "type": "choice", "required": True, "choices": ["morning", "afternoon"]}
    assert "choices" not in next(f for f in described["fields"] if f["name"] == "applicant_name")


def test_unknown_procedure_names_the_available_ones():
    with pytest.raises(UnknownProcedure) as caught:
        get_procedure("passport")
    assert caught.value.code == "unknown_procedure" and caught.value.http_status == 404
    assert caught.value.message("zh").startswith("没有这个办事项目：passport")
    assert "elderly_allowance" in caught.value.message("zh")


def test_a_procedure_file_with_an_unknown_field_type_is_refused(tmp_path):
    source = (DEFAULT_DIR / "appointment.yaml").read_text(encoding="utf-8")
    (tmp_path / "appointment.yaml").write_text(source.replace("type: cn_mobile", "type: phone"), encoding="utf-8")
    with pytest.raises(InvalidProcedureFile, match=r"appointment\.yaml"):
        load_procedures(tmp_path)


# ---- resident ID ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _vectors("stdnum.cn.ric", "validate"))
def test_stdnum_validate_vectors_through_the_cn_id_field(vector):
    spec = field_of("elderly_allowance", "applicant_id")
    if "raises" in vector:
        error = rejection(spec, vector["input"])
        assert not error.needs_worker, error
    else:
        assert spec.parse(vector["input"], TODAY) == ast.literal_eval(vector["returns"])


@pytest.mark.parametrize("vector", _vectors("id_validator.validator", "is_valid"))
def test_numbers_valid_in_practice_are_never_flatly_rejected(vector):
    """id-validator.py (non-strict) accepts 15-digit cards, residence permits and place codes
    issued after the birth year; Linli accepts them or hands them to a worker."""
    spec = field_of("elderly_allowance", "applicant_id")
    try:
        spec.parse(vector["input"], TODAY)
    except FieldError as exc:
        assert exc.needs_worker == vector["expected"], exc
    else:
        assert vector["expected"], vector


def test_wrong_check_digit_names_the_field():
    good = make_id("19560101")
    wrong = good[:-1] + ("1" if good[-1] != "1" else "2")
    error = rejection(field_of("elderly_allowance", "applicant_id"), wrong)
    assert error.message("zh").startswith("身份证号校验位不对，请核对最后一位")
    assert not error.needs_worker


def test_impossible_birth_date_has_its_own_message():
    error = rejection(field_of("elderly_allowance", "applicant_id"), make_id("19560230"))
    assert "出生日期" in error.message("zh") and "校验位" not in error.message("zh")
    assert not error.needs_worker


def test_birth_date_after_today_is_rejected():
    assert "出生日期" in rejection(field_of("elderly_allowance", "applicant_id"), make_id("20270101")).message("zh")


def test_legacy_fifteen_digit_id_goes_to_a_worker():
    error = rejection(field_of("elderly_allowance", "applicant_id"), "610104620927690")
    assert error.needs_worker
    assert "15位" in error.message("zh") and "转人工" in error.message("zh")


def test_residence_permit_goes_to_a_worker():
    error = rejection(field_of("elderly_allowance", "applicant_id"), make_id("20000101", region="810000"))
    assert error.needs_worker and "港澳台" in error.message("zh")


def test_karamay_elder_born_before_the_district_code_existed_is_accepted():
    # 650202 (独山子区) dates from 1983; stdnum's validate rejects anyone born earlier.
    number = make_id("19340101")
    assert not ric.is_valid(number)
    assert field_of("elderly_allowance", "applicant_id").parse(number, TODAY) == number


def test_id_is_normalised():
    number = make_id("19560101", sequence="010")
    typed = f" {number[:6]} {number[6:14]} {number[14:]}".lower()
    assert field_of("legal_aid", "applicant_id").parse(typed, TODAY) == number


# ---- other field types ------------------------------------------------------------------------


def test_ten_digit_mobile_names_the_field():
    error = rejection(field_of("elderly_allowance", "mobile"), "1381234567")
    assert "手机号码" in error.message("zh") and "11位" in error.message("zh")


def test_mobile_is_normalised_and_landlines_refused():
    spec = field_of("elderly_allowance", "mobile")
    assert spec.parse("+86 138-1234-5678", TODAY) == "13812345678"
    assert "座机" in rejection(spec, "01012345678").message("zh")


def test_name_with_digits():
    assert rejection(field_of("legal_aid", "applicant_name"), "张三3").message("zh") == "姓名不能包含数字。"


@pytest.mark.parametrize("raw", [SQL, HTML])
def test_name_refuses_sql_and_html(raw):
    assert "姓名" in rejection(field_of("legal_aid", "applicant_name"), raw).message("zh")


def test_minority_name_with_middle_dot():
    assert field_of("legal_aid", "applicant_name").parse("买买提・艾力", TODAY) == "买买提·艾力"


@pytest.mark.parametrize(("procedure", "name"), [("legal_aid", "description"), ("legal_aid", "address")])
def test_html_in_text_and_address_is_refused(procedure, name):
    spec = field_of(procedure, name)
    assert spec.label["zh"] in rejection(spec, f"我家楼下{HTML}有人吵架，已经三个月了").message("zh")


@pytest.mark.parametrize(("procedure", "name"), [("legal_aid", "description"), ("legal_aid", "address")])
def test_sql_in_text_and_address_stays_plain_data(procedure, name):
    """Values go to the database as bound parameters, so SQL-looking text is just text."""
    assert field_of(procedure, name).parse(SQL, TODAY) == SQL


def test_text_minimum_length():
    assert "详细" in rejection(field_of("legal_aid", "description"), "欠工资").message("zh")


@pytest.mark.parametrize("raw", ["2026-11-30", "2026/11/30", "2026年11月30日", "20261130"])
def test_date_formats(raw):
    assert field_of("appointment", "date").parse(raw, TODAY) == date(2026, 11, 30)


def test_date_must_be_on_the_calendar_and_in_range():
    spec = field_of("appointment", "date")
    assert "不是真实的日期" in rejection(spec, "2027-02-30").message("zh")
    assert "不能早于2026年11月23日" in rejection(spec, "2026-11-22").message("zh")
    assert "不能晚于" in rejection(spec, "2027-06-01").message("zh")
    assert "不能晚于" in rejection(field_of("unemployment_registration", "separation_date"), "2026-11-24").message("zh")


@pytest.mark.parametrize(("raw", "key"), [("afternoon", "afternoon"), ("上午", "morning"), ("MORNING", "morning"),
                                          ("下午三点左右", "afternoon")])
def test_choice_matches_key_label_or_keyword(raw, key):
    assert field_of("appointment", "time_slot").parse(raw, TODAY) == key


def test_choice_error_lists_the_options():
    message = rejection(field_of("appointment", "time_slot"), "随便").message("zh")
    assert "上午" in message and "下午" in message


def test_number_bounds():
    spec = FormField(
        "people", "number", True, {"zh": "人数", "en": "people"}, {"zh": "几个人？", "en": "How many?"}, min=1, max=5
    )
    assert spec.parse("３", TODAY) == 3
    assert spec.parse("两", TODAY) == 2
    assert "人数不能大于5" in rejection(spec, "6").message("zh")
    assert "整数" in rejection(spec, "很多").message("zh")


# ---- whole submissions ------------------------------------------------------------------------


def elderly_answers(**changes: str) -> dict[str, str]:
    return {
        "applicant_name": "王秀英",
        "applicant_id": make_id("19340101"),
        "mobile": "138 1234 5678",
        "address": "独山子区大庆东路1号3单元201",
        "applicant_role": "家属代办",
        "payment_card": "社保卡",
        **changes,
    }


def test_valid_submission_is_cleaned():
    cleaned, errors = get_procedure("elderly_allowance").validate(elderly_answers(), TODAY)
    assert errors == []
    assert cleaned["mobile"] == "13812345678"
    assert cleaned["applicant_role"] == "family" and cleaned["payment_card"] == "social_security_card"


def test_missing_required_field_names_it():
    answers = elderly_answers()
    del answers["mobile"]
    cleaned, errors = get_procedure("elderly_allowance").validate(answers, TODAY)
    assert [(e.field, "手机号码" in e.message("zh")) for e in errors] == [("mobile", True)]
    assert "mobile" not in cleaned


def test_optional_field_may_be_left_out():
    answers = {"applicant_name": "李明", "mobile": "13812345678", "service": "医保", "date": "2026-11-30",
               "time_slot": "上午"}
    cleaned, errors = get_procedure("appointment").validate(answers, TODAY)
    assert errors == [] and "applicant_id" not in cleaned


def test_unknown_field_key_is_an_error():
    _, errors = get_procedure("elderly_allowance").validate(elderly_answers(password="x"), TODAY)
    assert [e.field for e in errors] == ["password"]


def test_every_bad_answer_is_reported_at_once():
    _, errors = get_procedure("elderly_allowance").validate(
        elderly_answers(applicant_name=SQL, address=HTML, mobile="1381234567"), TODAY
    )
    assert {e.field for e in errors} == {"applicant_name", "address", "mobile"}


# ---- eligibility ------------------------------------------------------------------------------


@pytest.fixture
def eligibility_at(benefit_tables: BenefitTables):
    def outcome(birth: str, today: date = TODAY) -> Eligibility:
        """The elderly allowance outcome for a complete, valid application by someone born on `birth`."""
        procedure = get_procedure("elderly_allowance")
        cleaned, errors = procedure.validate(elderly_answers(applicant_id=make_id(birth)), today)
        assert errors == []
        return procedure.check_eligibility(cleaned, today, benefit_tables)

    return outcome


def test_sixty_five_is_too_young_for_the_elderly_allowance(eligibility_at):
    result = eligibility_at("19610101")
    assert not result.eligible and not result.needs_worker
    assert "70" in result.reason_zh
    assert result.doc_id == "kmy-elderly-allowance"


def test_ninety_two_is_eligible_with_the_published_amount(eligibility_at):
    result = eligibility_at("19340101")
    assert result.eligible and not result.needs_worker
    assert "500" in result.reason_zh and result.doc_id == "kmy-elderly-allowance"


def test_eighty_five_has_no_published_rate_and_needs_a_worker(eligibility_at, benefit_tables):
    result = eligibility_at("19410101")
    assert result.eligible and result.needs_worker
    assert result.reason_zh == benefit_tables.benefit_table("karamay_elderly_allowance_by_age").missing_note
    assert result.reason_zh.startswith("公开资料没有载明80至89周岁的发放标准")
    assert "80 to 89" in result.reason_en


def test_age_comes_from_the_day_passed_in(eligibility_at):
    assert not eligibility_at("19561124").eligible  # 69 on 23 November 2026
    assert eligibility_at("19561124", today=date(2026, 11, 24)).eligible


def test_unemployment_registration_needs_working_age(benefit_tables):
    p = get_procedure("unemployment_registration")
    result = p.check_eligibility({"applicant_id": make_id("20110101")}, TODAY, benefit_tables)
    assert not result.eligible and "16" in result.reason_zh
    assert p.check_eligibility({"applicant_id": make_id("19900101")}, TODAY, benefit_tables).eligible


def test_a_table_missing_from_the_index_is_a_clear_error_not_a_crash():
    procedure = get_procedure("elderly_allowance")
    with pytest.raises(MissingBenefitTable) as caught:
        procedure.check_eligibility({"applicant_id": make_id("19340101")}, TODAY, InMemoryBenefitTables([]))
    assert isinstance(caught.value, InvalidProcedureFile) and caught.value.http_status == 503
    assert "karamay_elderly_allowance_by_age" in caught.value.message("zh") and "知识库" in caught.value.message("zh")
    assert "indexed document" in caught.value.message("en")


class _IndexWithBenefitDocuments:
    """The two store calls `GroundedAnswerer` makes for benefit tables, over shipped files."""

    def __init__(self, *paths: Path) -> None:
        self.metas = [load_file(p).meta for p in paths]

    def generation(self) -> int:
        return 1

    def benefit_documents(self) -> list:
        return self.metas


def test_the_answerer_serves_procedures_the_tables_of_the_indexed_documents():
    store = _IndexWithBenefitDocuments(KB_PACKAGE_DIR / "corpus" / "zh" / "kmy-elderly-allowance.md")
    answerer = GroundedAnswerer(SimpleNamespace(store=store), settings=None, cues=None, regions=None)
    tables: BenefitTables = answerer
    assert tables.benefit_table("karamay_elderly_allowance_by_age").doc_id == "kmy-elderly-allowance"
    assert tables.benefit_table("karamay_elderly_allowance_by_age_en") is None  # not indexed here
    procedure = get_procedure("elderly_allowance")
    result = procedure.check_eligibility({"applicant_id": make_id("19340101")}, TODAY, answerer)
    assert result.eligible and "500" in result.reason_zh
    assert "500" in result.reason_en  # the English twin only words it; without it the zh table speaks
