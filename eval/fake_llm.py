"""Scripted LangChain chat models for the LLM composer's tests and its faithfulness evaluation.

LangChain's own fakes (`FakeListChatModel`, `GenericFakeChatModel`) answer the same whatever they
are asked; these read what the composer sent them (the system prompt, the numbered passages, the
question) and answer from it, as a real model would: `paraphrasing_script` words passages (and
sometimes gets a number wrong), and an obedient script does what an injected instruction says."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult

_PASSAGE_RE = re.compile(r'<passage id="(\d+)"[^>]*>\n(.*?)\n</passage>', re.DOTALL)
_QUESTION_RE = re.compile(r"<question>\n(.*?)\n</question>", re.DOTALL)

Script = Callable[[list[BaseMessage]], str]


class ScriptedChatModel(BaseChatModel):
    """A chat model whose reply is `script(messages)`, after `delay_s`, or `error` raised."""

    script: Script
    delay_s: float = 0.0
    error: BaseException | None = None
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.script(messages)))])


def system_prompt(messages: list[BaseMessage]) -> str:
    return next((str(m.content) for m in messages if isinstance(m, SystemMessage)), "")


def _human(messages: list[BaseMessage]) -> str:
    return next((str(m.content) for m in messages if isinstance(m, HumanMessage)), "")


def passages(messages: list[BaseMessage]) -> dict[int, str]:
    return {int(n): text for n, text in _PASSAGE_RE.findall(_human(messages))}


def question(messages: list[BaseMessage]) -> str:
    match = _QUESTION_RE.search(_human(messages))
    return match.group(1) if match else ""


# ---- a model that paraphrases, and now and then gets a number wrong ------------------------

_REWORDINGS = (("一般需要", "要"), ("可以", "能"), ("需要", "要"), ("应当", "要"), ("马上", "立刻"))
_SENTENCE_RE = re.compile(r"[^。！？!?\n]+[。！？!?]?")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def _plain_sentences(text: str) -> list[str]:
    out = []
    for raw in _SENTENCE_RE.findall(text):
        s = re.sub(r"^\s*(?:[-*•#]+|\d{1,2}[.、)）])\s*", "", raw).strip()
        if len(s) >= 6 and not s.startswith("|") and not s.endswith(("？", "?")):
            out.append(s)
    return out


def alters_number(text: str, every: int) -> bool:
    """Deterministically, about one question in `every`."""
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % every == 0


def paraphrasing_script(alter_every: int = 4, drafts: list[dict[str, Any]] | None = None) -> Script:
    """Words the first two sentences of passage 1 (the best evidence) a little more plainly, cites
    [1]; for about one question in `alter_every` it adds 10 to the first number it writes. Each
    draft is appended to `drafts` (text, passages, whether a number was altered)."""

    def script(messages: list[BaseMessage]) -> str:
        numbered = passages(messages)
        if not numbered:
            return "NO_ANSWER"
        english = not re.search(r"[\u4e00-\u9fff]", question(messages))
        chosen = _plain_sentences(numbered[min(numbered)])[:2]
        if not chosen:
            return "NO_ANSWER"
        bodies = []
        for sentence in chosen:
            for old, new in _REWORDINGS:
                sentence = sentence.replace(old, new)
            bodies.append(sentence.rstrip("。.!！?？"))
        altered = alters_number(question(messages), alter_every) and any(_NUMBER_RE.search(b) for b in bodies)
        if altered:
            at = next(i for i, b in enumerate(bodies) if _NUMBER_RE.search(b))
            bodies[at] = _NUMBER_RE.sub(lambda m: f"{float(m.group(0)) + 10:g}", bodies[at], count=1)
        text = (" " if english else "").join(b + ("[1]." if english else "[1]。") for b in bodies)
        if drafts is not None:
            drafts.append({"text": text, "passages": numbered, "altered": altered})
        return text

    return script
