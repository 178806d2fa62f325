import pytest

from knowledge_base.numbers import cn_to_int, extract_age, numerals


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("九十二", 92), ("八十六", 86), ("十", 10), ("一百", 100), ("一百零二", 102), ("两千五百", 2500),
        ("二〇二五", 2025),
    ],
)
def test_chinese_numerals(text, value):
    assert cn_to_int(text) == value


@pytest.mark.parametrize(
    ("question", "age"),
    [
        ("我奶奶今年92了，每个月能领多少高龄补贴？", 92),
        ("我爸八十六岁了", 86),
        ("老人满70周岁能领吗", 70),
        ("My mother is 85 years old", 85),
        ("aged 101, how much?", 101),
        ("高龄津贴怎么申请", None),
    ],
)
def test_age_extraction(question, age):
    assert extract_age(question) == age


def test_numerals_ignore_words_that_merely_contain_numeral_characters():
    found = [raw for raw, _ in numerals("统一办理，一站式服务，每月500元")]
    assert found == ["500"]
