from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from assistant.api import create_app
from assistant.cli import app as linli_app
from assistant.core.settings import Settings, get_settings
from assistant.escalation.auth import UserStore
from assistant.knowledge import KnowledgeBase
from tests.conftest import DATABASES, SHARED_CACHE, write_doc

ALLOWANCE = """# 克拉玛依市高龄津贴发放标准

## 发放标准
| 年龄（周岁） | 每月金额（元） |
| --- | --- |
| 70至79周岁 | 100 |
| 90至99周岁 | 500 |

70至79周岁的老年人，每月可领取高龄津贴100元。
90至99周岁的老年人，每月可领取高龄津贴500元。

## 怎么申请
申请高龄津贴，请带上老人的身份证、户口簿和银行卡，到社区服务中心办理。
"""
TABLE = """benefit_tables:
  - id: t1
    title: 克拉玛依市高龄津贴月标准
    subject: 高龄津贴
    keywords: [高龄津贴, 高龄补贴]
    variable: age
    unit: 元/月
    rows:
      - {min: 70, max: 79, amount: 100}
      - {min: 90, max: 99, amount: 500}
    missing_note: 公开资料没有载明80至89周岁的发放标准，请向社区服务中心咨询。"""
UNEMPLOYMENT = """# 失业登记

## 需要准备的材料
办理失业登记需要带本人身份证和社会保障卡。

## 在哪里办、怎么办
失业登记可以到户籍所在地或常住地的公共就业服务机构办理，也可以在社区服务中心办理。
"""


def write_small_corpus(root: Path) -> Path:
    """`root`/corpus with the two small documents (the allowance and unemployment registration)."""
    corpus = root / "corpus"
    corpus.mkdir()
    write_doc(corpus, "allowance", ALLOWANCE, title="克拉玛依市高龄津贴发放标准", category="elderly_care",
              region="karamay")
    write_doc(corpus, "unemployment", UNEMPLOYMENT, title="失业登记", category="employment")
    return corpus


@pytest.fixture(scope="session")
def small_index_dir(tmp_path_factory) -> Path:
    """A small real index shared by the CLI and API tests."""
    root = tmp_path_factory.mktemp("small-kb")
    corpus = write_small_corpus(root)
    path = corpus / "allowance.md"
    text = path.read_text(encoding="utf-8").replace("language: zh\n", "language: zh\n" + TABLE + "\n", 1)
    path.write_text(text, encoding="utf-8")
    settings = Settings(data_dir=root / "var", embedding_cache=SHARED_CACHE, corpus_dirs=[corpus], law_corpus=None)
    KnowledgeBase(settings).build()
    return root


def linli_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LINLI_DATA_DIR=str(root / "var"),
        LINLI_EMBEDDING_CACHE=str(SHARED_CACHE),
        LINLI_CORPUS_DIRS=f'["{root / "corpus"}"]',
        LINLI_LAW_CORPUS="",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    return env


def run_linli(root: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args], env=linli_env(root), capture_output=True, text=True,
        timeout=timeout,
    )


def run_linli_in_process(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`run_linli` without a new process: typer's runner calls the same `linli` app under the same
    environment (`linli_env(root)`, or `env`), with the settings' cache cleared around the call so
    the command reads it as a new process would. For tests of what a command does; a new Python
    and model start-up each time (4-10 s on a loaded 2-core machine, against 0.2 s here) is paid
    only by the tests of the process itself (test_cli's thread across processes, the speech CLI)."""
    changed = {k: v for k, v in (env or linli_env(root)).items() if os.environ.get(k) != v}
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(linli_app, list(args), env=changed, obj=DATABASES)
    finally:
        get_settings.cache_clear()
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # What a process would have printed: the traceback of an exception the command did not handle.
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["linli", *args], result.exit_code, result.stdout, stderr)


# The staff `app_with_staff` creates: (user name, role); each one's password is "<name>-password-2024".
STAFF = (("boss", "admin"), ("sup", "supervisor"), ("wang", "worker"))


@contextmanager
def app_with_staff(settings: Settings) -> Iterator[tuple[TestClient, UserStore]]:
    """The app serving these settings, with an administrator, a supervisor and a worker (STAFF)."""
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as client:
        users = app.state.services.users
        for name, role in STAFF:
            users.add(name, f"{name}-password-2024", role=role, centre="default")
        yield client, users


def bearer(users: UserStore, username: str) -> dict[str, str]:
    """The Authorization header of a fresh token for this user."""
    actor = next(a for a in users.list() if a.username == username)
    return {"Authorization": f"Bearer {users.issue_token(actor)}"}
