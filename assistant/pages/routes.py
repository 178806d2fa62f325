"""`/kiosk` (the community-centre screen, portrait 1080×1920) and `/chat` (phones): one page
template and one script (static/pages.js). The page mints its own session with
`POST /api/v1/sessions` and sends `X-Session-Token` with every call; nothing here trusts a
client-chosen id. Every sentence on the page is in wording.yaml (zh and en, checked at import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from assistant.core.wording import LANGUAGES, InvalidWording, read_wording, sentences
from assistant.dependencies import ServicesDep

PAGES_DIR = Path(__file__).resolve().parent
PAGES_STATIC = str(PAGES_DIR / "static")
WORDING_FILE = PAGES_DIR / "wording.yaml"
# How often the page asks for a worker's replies (the brief: every 2-3 s).
POLL_MS = 2500

templates = Jinja2Templates(directory=str(PAGES_DIR / "templates"))

Mode = Literal["kiosk", "chat"]


def load_wording(path: Path = WORDING_FILE) -> dict[str, dict[str, str]]:
    """Sentence id ("topics.medical" for a section's entry) -> {"zh": …, "en": …}, checked."""
    return {key: {lang: entry[lang] for lang in LANGUAGES} for key, entry in sentences(read_wording(path))}


# Loaded once at import, like the other wording files: a broken edit stops `linli serve` at start.
WORDING = load_wording()
TOPICS = [key.removeprefix("topics.") for key in WORDING if key.startswith("topics.")]
if any(f"topic_questions.{topic}" not in WORDING for topic in TOPICS):
    raise InvalidWording("wording.yaml 的每个常见问题（topics）都要有 topic_questions",
                         "wording.yaml: every entry of topics needs one in topic_questions")


def page_context(mode: Mode, language: str, *, idle_s: int, max_record_s: float) -> dict[str, Any]:
    """What the template and the script need: the words in one language and the timings."""
    words = {key: entry[language] for key, entry in WORDING.items()}
    topics = [{"label": words[f"topics.{t}"], "question": words[f"topic_questions.{t}"]} for t in TOPICS]
    config = {"mode": mode, "lang": language, "idleSeconds": idle_s if mode == "kiosk" else 0,
              "maxRecordSeconds": max_record_s, "pollMs": POLL_MS,
              "text": {k: v for k, v in words.items() if not k.startswith(("topics.", "topic_questions."))}}
    return {"mode": mode, "lang": language, "t": words, "topics": topics, "config": config,
            "other_lang": "zh" if language == "en" else "en"}


pages = APIRouter(include_in_schema=False)


def _render(request: Request, services: ServicesDep, mode: Mode) -> HTMLResponse:
    language = "en" if request.query_params.get("lang") == "en" else "zh"
    settings = services.settings
    context = page_context(mode, language, idle_s=settings.residents.kiosk_idle_s,
                           max_record_s=settings.speech.max_seconds)
    response = templates.TemplateResponse(request, "page.html", context)
    # A kiosk's conversation must not come back from the browser's cache after a reset.
    response.headers["Cache-Control"] = "no-store"
    return response


@pages.get("/kiosk", response_class=HTMLResponse)
def kiosk(request: Request, services: ServicesDep) -> HTMLResponse:
    return _render(request, services, "kiosk")


@pages.get("/chat", response_class=HTMLResponse)
def chat(request: Request, services: ServicesDep) -> HTMLResponse:
    return _render(request, services, "chat")
