"""Unanswered questions grouped by similar wording (normalised text, character-bigram Jaccard),
the feedback wording file, and the CSV export's protection against spreadsheet formulas."""

from __future__ import annotations

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
