"""Unanswered questions grouped by similar wording (normalised text, character-bigram Jaccard),
the feedback wording file, and the CSV export's protection against spreadsheet formulas."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from assistant.admin.routes import to_csv
from assistant.analytics.feedback import FeedbackWording, normalise_reply
from assistant.analytics.grouping import bigrams, group_similar, jaccard, normalise_question
from assistant.analytics.queries import ReportTable


def test_wording_differences_that_do_not_change_the_question_are_ignored() -> None:
    assert normalise_question("请问，护照怎么办理呢？") == normalise_question("护照 怎么办理") == "护照怎么办理"
    assert normalise_question("ＡＢＣ卡怎么办？") == "abc卡怎么办"
    assert jaccard(bigrams("护照怎么办理"), bigrams("护照要怎么办理")) >= 0.5
    assert jaccard(bigrams("护照怎么办理"), bigrams("低保怎么申请")) < 0.2


def test_similar_questions_form_one_group_the_largest_first() -> None:
    groups = group_similar([("护照怎么办理", 3), ("护照怎么办理？", 2), ("请问护照要怎么办理", 1),
                            ("低保怎么申请", 4), ("宠物狗办证", 1), ("", 9)], threshold=0.5)
    assert [(g.wording, g.count) for g in groups] == [("护照怎么办理", 6), ("低保怎么申请", 4), ("宠物狗办证", 1)]
    assert groups[0].members == {"护照怎么办理": 3, "护照怎么办理？": 2, "请问护照要怎么办理": 1}
    # A stricter threshold keeps the reworded question apart.
    strict = group_similar([("护照怎么办理", 3), ("请问护照要怎么办理", 1)], threshold=0.9)
    assert [g.wording for g in strict] == ["护照怎么办理", "请问护照要怎么办理"]


def test_the_feedback_wording_file_is_complete() -> None:
    wording = FeedbackWording.load()
    assert "not_my_question" in wording.reasons and wording.reason_label("wrong") == "回答不对"
    assert wording.keywords[normalise_reply("不满意！")] == -1 and wording.keywords[normalise_reply("Good")] == 1
    page = wording.for_page("zh")
    assert page["text"]["helpful"] == "有帮助" and len(page["reasons"]) == len(wording.reasons)


def test_csv_cells_residents_wrote_never_become_formulas() -> None:
    rows = [{"question": '=HYPERLINK("http://x")', "times": 2}, {"question": "护照, 怎么办", "times": 1}]
    exported = to_csv(ReportTable("unanswered", "t", {"question": "问题", "times": "次数"}, rows))
    assert exported.splitlines() == ["question,times", '"\'=HYPERLINK(""http://x"")",2', '"护照, 怎么办",1']


# Any text a resident or an API client can store: every Unicode character but lone surrogates
# (the API refuses those with a 422), control characters, tabs and spaces at either end included.
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(st.lists(st.tuples(ANY_TEXT, st.integers(min_value=1, max_value=50)), max_size=30),
       st.floats(min_value=0.05, max_value=1.0))
def test_grouping_keeps_every_wording_exactly_as_given(counted, threshold) -> None:
    """Issue 28, hole 2: a question starting with a tab was grouped stripped and looked up as
    written (KeyError, a 500 on /admin/analytics). Every wording comes back as it was given."""
    groups = group_similar(counted, threshold)
    expected: dict[str, int] = defaultdict(int)
    for text, count in counted:
        if normalise_question(text):
            expected[text] += count
    assert {text: n for group in groups for text, n in group.members.items()} == dict(expected)
    assert all(group.wording in group.members for group in groups)
    assert [g.count for g in groups] == sorted((g.count for g in groups), reverse=True)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


@given(st.lists(st.fixed_dictionaries({"question": st.one_of(ANY_TEXT, st.none()),
                                        "times": st.integers(), "channel": ANY_TEXT}), max_size=8))
def test_the_csv_export_round_trips_any_text_and_never_a_formula(rows) -> None:
    """Issue 28, hole 17: an API client's channel "\t=1+10" reached the export unescaped."""
    exported = to_csv(ReportTable("t", "t", {"question": "问题", "times": "次数", "channel": "渠道"}, rows))
    back = list(csv.DictReader(io.StringIO(exported, newline="")))
    assert len(back) == len(rows)
    for row, read in zip(rows, back, strict=True):
        for key in ("question", "channel"):
            value, cell = row[key], read[key]
            if value is None:
                assert cell == ""
            elif value.lstrip(" \u3000").startswith(FORMULA_STARTS):
                assert cell == "'" + value
            else:
                assert cell == value
        assert read["times"] == str(row["times"])
