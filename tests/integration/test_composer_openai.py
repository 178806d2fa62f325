"""The LLM composer against a real OpenAI-compatible server (llama.cpp, vLLM, Ollama), only when
one is configured: LINLI_TEST_LLM_BASE_URL and LINLI_TEST_LLM_MODEL (LINLI_TEST_LLM_API_KEY if the
server wants one). Skipped otherwise, with the reason printed (`pytest -rs`)."""

from __future__ import annotations

import os
import time

import pytest
from pydantic import SecretStr

from assistant.core.domain import Answer, Citation
from assistant.core.settings import LlmSettings
from knowledge_base.answering import ungrounded_facts
from knowledge_base.composers import ExtractiveComposer, LangChainComposer, openai_compatible_model
from tests.unit.test_composer import EXTRACTIVE_TEXT, PASSAGE, _request

pytestmark = pytest.mark.integration

BASE_URL = os.environ.get("LINLI_TEST_LLM_BASE_URL")
MODEL = os.environ.get("LINLI_TEST_LLM_MODEL")


@pytest.fixture
def real_settings() -> LlmSettings:
    if not BASE_URL or not MODEL:
        pytest.skip("no OpenAI-compatible server configured: set LINLI_TEST_LLM_BASE_URL (e.g. "
                    "http://127.0.0.1:8080/v1) and LINLI_TEST_LLM_MODEL to run the LLM composer against it")
    pytest.importorskip("langchain_openai", reason="the optional `llm` extra is not installed: pip install -e '.[llm]'")
    return LlmSettings(base_url=BASE_URL, model=MODEL, budget_s=float(os.environ.get("LINLI_TEST_LLM_BUDGET_S", "20")),
                       api_key=SecretStr(os.environ.get("LINLI_TEST_LLM_API_KEY", "not-needed")))


def test_a_real_model_answers_or_falls_back_within_its_budget(real_settings: LlmSettings):
    citation = Citation(doc_id="allowance", title="高龄津贴办理指南", chunk_id="allowance::0", text=PASSAGE)
    extractive = Answer(answer=EXTRACTIVE_TEXT, refused=False, confidence=0.9, citations=[citation], language="zh")
    composer = LangChainComposer(openai_compatible_model(real_settings), real_settings,
                                 ExtractiveComposer(lambda request: extractive), ungrounded_facts)
    started = time.perf_counter()
    answer = composer.compose(_request("申请高龄津贴要带什么"))
    assert time.perf_counter() - started < real_settings.budget_s + 1.0
    assert answer.citations and not answer.refused
    # Whatever the model wrote, what goes out carries only what the passages carry.
    sources = [c.text for c in answer.citations] + [c.title for c in answer.citations]
    assert ungrounded_facts(answer.answer, sources) == []
    print(f"\nreal model ({MODEL}) answer: {answer.answer}")
