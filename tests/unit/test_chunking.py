from datetime import date

from assistant.core.domain import Document, DocumentMeta
from knowledge_base.chunking import ChunkingConfig, chunk_document


def _doc(body: str) -> Document:
    meta = DocumentMeta("doc-1", "标题", "pension", "national", "测试", date(2024, 1, 1), None, "3", "zh")
    return Document(meta=meta, body=body)


BODY = (
    "# 养老金资格认证\n\n## 这是什么\n养老金资格认证是确认领取人仍然符合领取条件。每年认证一次。\n\n"
    "## 在哪里办、怎么办\n可以在手机上刷脸认证；也可以到社区服务中心办理！行动不便的老人可以申请上门认证？\n"
)


def test_chunks_keep_heading_path_ids_version_and_offsets():
    doc = _doc(BODY)
    chunks = chunk_document(doc)
    assert [c.heading_path for c in chunks] == [
        ("养老金资格认证", "这是什么"),
        ("养老金资格认证", "在哪里办、怎么办"),
    ]
    for i, chunk in enumerate(chunks):
        assert chunk.doc_id == "doc-1" and chunk.version == "3" and chunk.ordinal == i
        assert chunk.chunk_id == f"doc-1::{i}"
        assert doc.body[chunk.start : chunk.end] == chunk.text


def test_long_sections_split_only_at_sentence_ends():
    sentence = "申请人需要带身份证和户口簿到社区服务中心办理。"
    body = "# 标题\n\n## 材料\n" + sentence * 40
    chunks = chunk_document(_doc(body), ChunkingConfig(max_chars=100, min_chars=20))
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text.endswith("。")
        assert len(chunk.text) <= 100


def test_text_before_the_first_heading_is_kept():
    chunks = chunk_document(_doc("前言一句话。\n\n# 标题\n\n正文。"))
    assert chunks[0].text == "前言一句话。"
    assert chunks[0].heading_path == ("标题",)  # falls back to the document title
