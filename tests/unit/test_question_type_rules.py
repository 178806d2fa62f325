"""The general rules behind issue 31's question types: English counts read as figures with what
they count, ages said as "过了N" / "over N", and an allowance named by a bare near-synonym."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge_base.answering import DetailWords, requested_detail
from knowledge_base.benefits import AllowanceWords, BenefitTable, RegionResolver, match_benefit_question
from knowledge_base.claims import figures, find_claim, verdict
from knowledge_base.loaders import load_file
from knowledge_base.numbers import extract_age

KB = Path(__file__).resolve().parents[2] / "knowledge_base"
ENGLISH = ("Yangquan has 86 urban and 305 rural day-care centres for seniors. By the end of August 2025 there "
           "were 78 meal-assistance stations. By the end of 2024, Karamay had allocated 13.5 million yuan to "
           "the scheme. The scheme benefits more than 90,000 people a year.")


@pytest.mark.parametrize(
    ("question", "expected", "said"),
    [
        ("I heard Karamay has 80 meal-assistance stations, is that correct?", False, "80"),
        ("Yangquan has 100 urban day-care centres, right?", False, "100"),
        ("There are 305 rural day-care centres in Yangquan, is that right?", True, "305"),
        ("The scheme helps 200,000 people a year, doesn't it?", False, "200,000"),
        ("Karamay spent 50 million yuan on it, is he right?", False, "50 million yuan"),
    ],
)
def test_an_english_count_claim_is_checked_against_the_count_of_the_same_thing(question, expected, said):
    claim = find_claim(question)
    assert claim is not None and claim.figure is not None
    assert verdict(claim, figures(ENGLISH)) is expected
    assert claim.figure.say("en") == said


def test_years_and_ages_are_no_english_counts():
    assert [f.value for f in figures("By the end of August 2025 there were 78 meal-assistance stations.")] == [78]
    claim = find_claim("Is it true the allowance for a 95 year old is 600 yuan?")
    assert claim is not None and claim.figure is not None and claim.figure.kind == "money"


@pytest.mark.parametrize(
    ("question", "age"),
    [("老人过了七十五，每个月补助多少", 75), ("年过九十的老人", 90), ("我爸超过八十岁了", 81),
     ("my grandmother is past 100", 100), ("my grandfather is over 90, how much", 91),
     ("过了2024年再说", None), ("it helps over 90,000 people", None),
     ("克拉玛依老年人九十出头,每个月多少", 91), ("我妈七十出头", 71), ("she is over a hundred years old", 101)],
)
def test_ages_said_as_past_or_over_a_number(question, age):
    assert extract_age(question) == age


@pytest.fixture(scope="module")
def tables():
    corpus = KB / "corpus"
    paths = [corpus / "zh" / "kmy-elderly-allowance.md", corpus / "en" / "kmy-elderly-allowance-en.md"]
    return [t for p in paths for t in BenefitTable.from_meta(load_file(p).meta)]


@pytest.mark.parametrize(
    ("question", "language", "amount"),
    [
        ("克拉玛依100岁的老人每个月补助有多少", "zh", 800),
        ("家里老人96了,克拉玛依补助一个月多少", "zh", 500),
        ("My grandmother in Karamay is past 100, what is her monthly subsidy?", "en", 800),
        ("克拉玛依老人98岁，每月养老补贴能拿多少", "zh", 500),
        ("克拉玛依老人91岁，每个月的高龄补助是多少", "zh", 500),
        ("克拉玛依75岁的养老服务补贴多少", "zh", None),  # another benefit: 务 before 补贴
        # another allowance, or no region named: not the age table
        ("克拉玛依75岁的残疾人护理补贴多少", "zh", None),
        ("克拉玛依75岁,交通补贴多少", "zh", None),
        ("我75岁,每月补助多少", "zh", None),
        ("I am 75 in Karamay, how much is the transport subsidy?", "en", None),
    ],
)
def test_a_bare_near_synonym_of_allowance_reads_as_the_named_regions_table(tables, question, language, amount):
    allowance = AllowanceWords.load(KB / "data" / "allowance_words.yaml")
    regions = RegionResolver(KB / "data" / "regions.yaml")
    found = match_benefit_question(question, tables, regions, language, allowance=allowance)
    if amount is None:
        assert found is None
    else:
        assert found is not None and not isinstance(found, str) and found.bracket is not None
        assert found.bracket.amount == amount


@pytest.mark.parametrize("question", ["残疾分为哪几类", "星家桥社区有哪几种服务", "有哪几项服务"])
def test_which_ones_is_no_count_question(question):
    assert requested_detail(question) is None


def test_a_count_or_amount_is_judged_on_the_subject_not_the_verb_it_is_asked_with():
    words = DetailWords.load(KB / "data" / "detail_words.yaml")
    assert words.subject_terms("amount", ["法律费用保险", "花", "钱"]) == ["法律费用保险"]
    assert words.subject_terms("count", ["种"]) == ["种"]  # nothing left: all kept
    assert "类" in words.measures("种") and words.measures("栋") == {"栋"}


@pytest.mark.parametrize(("question", "written"), [
    ("With only 3 years of contributions I get 36 months of unemployment benefits, correct?", "36 months"),
    ("In the city, the dibao approval must be finished within 30 days, correct?", "30 days"),
    ("The check-ups are only open 12 hours a day, aren't they?", "12 hours"),
    ("My unemployment benefits can last up to 36 months, can't they?", "36 months"),
])
def test_an_english_length_of_time_is_a_claim_in_its_unit_and_a_year_is_not(question, written):
    claim = find_claim(question)
    assert claim is not None and claim.figure is not None and claim.figure.say("en") == written
    assert claim.figure.measure == "en " + written.split()[1].removesuffix("s")


@pytest.mark.parametrize("question", ["Can I use the check-up machines at 3 am, is that right?",
                                      "My mother is 95 years old, is that the top bracket?"])
def test_clock_times_and_years_are_no_claims(question):
    assert find_claim(question) is None


BY_CONDITION = figures("With ten years of contributions or more, benefits last up to 24 months. "
                       "With five to ten years, "
                       "up to 18 months. With one to five years, up to 12 months.")


@pytest.mark.parametrize(("question", "expected"), [
    ("I paid for three years, so I only get 6 months of benefits, right?", False),  # stated under no condition
    ("My benefits can last up to 36 months, can't they?", False),
    # 12 months is right only with 1-5 years of contributions, and the resident has 8: never "yes".
    ("With 8 years of contributions I get 12 months of benefits, correct?", None),
])
def test_a_length_of_time_given_by_condition_is_denied_when_wrong_and_never_confirmed(question, expected):
    claim = find_claim(question)
    assert claim is not None and verdict(claim, BY_CONDITION) is expected


def test_an_amount_beside_an_age_is_the_figure_checked():
    claim = find_claim("I was told people aged 100 and over in Karamay get 1000 yuan a month, is that right?")
    assert claim is not None and claim.figure == figures("1000 yuan")[0]
