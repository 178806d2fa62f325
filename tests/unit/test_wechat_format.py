"""A reply as WeChat text: the citations of one document are one line with all their numbers."""

from __future__ import annotations

from assistant.dialogue.reply import Reply
from assistant.wechat.service import format_reply


def _citation(doc_id: str, title: str) -> dict[str, str]:
    return {"doc_id": doc_id, "title": title, "chunk_id": f"{doc_id}-0", "text": "……"}


def test_citations_of_one_document_are_one_line_with_their_numbers():
    reply = Reply("answer", "高龄津贴每月500元[1]，在社区申请[2]，材料见[3]。", citations=[
        _citation("allowance", "高龄津贴发放标准"), _citation("guide", "办事指南"),
        _citation("allowance", "高龄津贴发放标准")])
    text = "\n".join(format_reply(reply, "zh"))
    assert "[1][3] 高龄津贴发放标准" in text and "[2] 办事指南" in text
    assert text.count("高龄津贴发放标准") == 1, text
    assert text.index("[1][3]") < text.index("[2] 办事指南"), "documents in the order first cited"


def test_a_lone_citation_keeps_its_plain_number():
    text = "\n".join(format_reply(Reply("answer", "每月500元[1]。", citations=[_citation("a", "标准")]), "en"))
    assert "[1] 标准" in text and "][" not in text
