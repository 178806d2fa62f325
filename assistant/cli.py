"""`linli` command line: serve, ask, search, chat, kb …, eval.

Every command reaches the services through one `Services` per process, built by the app's
callback from `get_settings()`. A few imports stay inside the commands that need them (each
marked): the index, the evaluations and speech pull in sklearn, pypinyin, jieba and the models
(2-4 s), which `linli --help`, `linli tickets list` or `linli users add` must not pay for."""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import sys
import threading
import uuid
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from assistant.channels import enabled_channels
from assistant.cluster import cluster_command
from assistant.core.db import Databases
from assistant.core.domain import SearchFilters
from assistant.core.errors import IndexNotBuilt, LinliError
from assistant.core.privacy import private_file
from assistant.core.settings import PrivacySettings, get_settings
from assistant.core.vault import generate_key, refuse_development_key
from assistant.dialogue.reply import Reply
from assistant.escalation.service import SYSTEM
from assistant.escalation.states import OPEN
from assistant.services import Services
from connectors.services.applications import Ineligible, InvalidApplication
from knowledge_base.guards import check_question

if TYPE_CHECKING:
    from assistant.knowledge import KnowledgeBase
    from assistant.speech.service import Heard

app = typer.Typer(help="Linli (邻里) — offline assistant for community service centres.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
kb_app = typer.Typer(help="Knowledge-base upkeep: build, add, remove, list, show.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
users_app = typer.Typer(help="Worker accounts for the console: add, list, passwd.", no_args_is_help=True)
app.add_typer(users_app, name="users")
tickets_app = typer.Typer(help="The escalation queue: list, sweep (SLA breaches).", no_args_is_help=True)
app.add_typer(tickets_app, name="tickets")
conversation_app = typer.Typer(help="One conversation replayed: its turns and what each changed.",
                               no_args_is_help=True)
app.add_typer(conversation_app, name="conversation")
err = Console(stderr=True)
out = Console()


@app.callback()
def main(ctx: typer.Context) -> None:
    # One container per process, built before any command runs; its members load on first use. A
    # caller running commands in its own process (the tests) may hand in its Databases as the
    # context's object: a database it has migrated is not migrated again per command.
    ctx.obj = Services(get_settings(), databases=ctx.obj if isinstance(ctx.obj, Databases) else None)


def _services(ctx: typer.Context) -> Services:
    """The process's services (click hands the root context's object down to every subcommand)."""
    services = ctx.find_object(Services)
    if services is None:
        raise RuntimeError("linli commands run through `app`, whose callback builds the services")
    return services


def _cli_actor() -> str:
    """Who the knowledge base's audit log names for a change made on this command line."""
    try:
        return f"命令行 {getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "命令行"


def _emit_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")


def _fail(exc: LinliError, as_json: bool, language: str = "zh") -> NoReturn:
    if as_json:
        _emit_json(exc.problem(language))
    else:
        err.print(f"[red]{exc.message(language)}[/red]")
    raise typer.Exit(code=2)


def _filters(region: str | None, category: str | None, as_of: str | None, include_expired: bool) -> SearchFilters:
    try:
        on = date.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise typer.BadParameter(f"--as-of 需要 YYYY-MM-DD 格式的日期：{as_of}") from None
    return SearchFilters(region=region, category=category, as_of=on, include_expired=include_expired)


def _ensure_built(kb: KnowledgeBase, as_json: bool) -> None:
    if not kb.is_built():
        _fail(IndexNotBuilt("知识库索引还没有建立，请先运行 linli kb build",
                            "the index is empty: run `linli kb build`"),
              as_json)


RegionOpt = Annotated[str | None, typer.Option(help="Region code: karamay, yangquan, hangzhou, chongqing")]
CategoryOpt = Annotated[str | None, typer.Option(help="Category, e.g. elderly_care, law")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Only documents in force on this date (YYYY-MM-DD)")]
ExpiredOpt = Annotated[bool, typer.Option("--include-expired", help="Also search expired documents")]


@app.command()
def ask(
    ctx: typer.Context,
    question: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    region: RegionOpt = None,
    category: CategoryOpt = None,
    as_of: AsOfOpt = None,
    include_expired: ExpiredOpt = False,
) -> None:
    """Answer a policy question with citations, or refuse plainly."""
    kb = _services(ctx).knowledge_base
    _ensure_built(kb, as_json)
    try:
        answer = kb.ask(question, filters=_filters(region, category, as_of, include_expired))
    except LinliError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        _emit_json(answer.public())
        return
    out.print(answer.answer)
    for i, c in enumerate(answer.citations, 1):
        out.print(f"  [{i}] {c.title} · {c.section}", style="dim")


@app.command()
def search(
    ctx: typer.Context,
    question: str,
    k: Annotated[int, typer.Option("--k", min=1, max=100)] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    mode: Annotated[str, typer.Option(help="bm25 | dense | hybrid | hybrid_rerank")] = "hybrid",
    region: RegionOpt = None,
    category: CategoryOpt = None,
    as_of: AsOfOpt = None,
    include_expired: ExpiredOpt = False,
) -> None:
    """Show the retrieved passages (full hybrid pipeline by default)."""
    kb = _services(ctx).knowledge_base
    _ensure_built(kb, as_json)
    try:
        question = check_question(question, kb.settings.answer.max_question_chars)
        hits = kb.search(question, k=k, filters=_filters(region, category, as_of, include_expired), mode=mode)  # type: ignore[arg-type]
    except LinliError as exc:
        _fail(exc, as_json)
        return
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    rows: list[dict[str, Any]] = [
        {"doc_id": h.chunk.doc_id, "chunk_id": h.chunk.chunk_id, "score": round(h.score, 6), "title": h.meta.title,
         "text": h.chunk.text}
        for h in hits
    ]
    if as_json:
        _emit_json({"hits": rows})
        return
    table = Table("#", "score", "doc", "title", "text")
    for i, r in enumerate(rows, 1):
        table.add_row(str(i), f"{r['score']:.4f}", r["doc_id"], r["title"], r["text"][:60].replace("\n", " "))
    out.print(table)


def _print_reply(reply: Reply) -> None:
    # soft_wrap: the terminal wraps; rich must not cut a ticket number or a phone number in two.
    out.print(reply.text, soft_wrap=True, markup=False)
    for i, c in enumerate(reply.citations, 1):
        out.print(f"  [{i}] {c['title']} · {c.get('section', '')}", style="dim", soft_wrap=True, markup=False)
    if reply.quick_replies:
        out.print("  " + " | ".join(f"[{q}]" for q in reply.quick_replies), style="cyan", soft_wrap=True,
                  markup=False)


@app.command()
def chat(ctx: typer.Context,
         session: Annotated[str | None, typer.Option(help="Session id (a new one by default)")] = None) -> None:
    """Interactive conversation with the dialogue engine (type 退出 or exit to leave)."""
    services = _services(ctx)
    _ensure_built(services.knowledge_base, False)
    engine = services.dialogue
    session_id = session or f"cli-{uuid.uuid4().hex[:12]}"
    out.print("您好，我是邻里助手。请问有什么可以帮您？（输入“退出”结束）")
    while True:
        try:
            text = input("> ")
        except (EOFError, KeyboardInterrupt):
            break
        if text.strip().lower() in {"退出", "exit", "quit"}:
            break
        if not text.strip():
            continue
        _print_reply(engine.handle(session_id, text, channel="cli", user_id=session_id))
    out.print("再见！")


@app.command()
def transcribe(
    ctx: typer.Context,
    file: Path,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    language: Annotated[str | None, typer.Option(help="zh or en (detected when omitted)")] = None,
) -> None:
    """Transcribe a voice recording offline (wav, mp3, amr, webm, ogg)."""
    heard = _hear_file(_services(ctx), file, as_json, language=language)
    if as_json:
        _emit_json(heard.public())
    else:
        out.print(heard.text, markup=False)


def _hear_file(services: Services, path: Path, as_json: bool, language: str | None = None) -> Heard:
    """Transcribe a recording on disk; an unreadable or bad file ends the command with why."""
    try:
        return services.speech.hear(path.read_bytes(), language=language)
    except OSError as exc:
        _fail(LinliError(f"读不了语音文件：{path}", f"Cannot read {path}: {exc}"), as_json)
    except LinliError as exc:
        _fail(exc, as_json)


@app.command()
def say(
    ctx: typer.Context,
    text: Annotated[str | None, typer.Argument()] = None,
    session: Annotated[str, typer.Option("--session", help="Session id; the thread continues across calls")] = "cli",
    audio: Annotated[Path | None, typer.Option(help="A voice recording instead of text")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    channel: Annotated[str, typer.Option(help="Channel name")] = "cli",
    user: Annotated[str | None, typer.Option(help="User id (defaults to the session id)")] = None,
) -> None:
    """Send one message (text, or --audio) to the dialogue engine and print the reply."""
    services = _services(ctx)
    kb = services.knowledge_base
    _ensure_built(kb, as_json)
    transcript = None
    if audio is not None:
        from assistant.speech.service import reply_to_voice  # noqa: PLC0415 - speech is heavy (see the docstring)

        heard = _hear_file(services, audio, as_json)
        transcript = heard.text
        reply = reply_to_voice(services.dialogue, heard, session, channel, user or session, kb.benefit_amounts())
    elif text is None:
        raise typer.BadParameter("请给出要说的话，或用 --audio 给一段语音。")
    else:
        reply = services.dialogue.handle(session, text, channel=channel, user_id=user or session)
    if as_json:
        payload = reply.public()
        if transcript is not None:
            payload["transcript"] = transcript
        _emit_json(payload)
        return
    if transcript is not None:
        out.print(f"（听到：{transcript}）", style="dim", markup=False)
    _print_reply(reply)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Serve the HTTP API (default http://127.0.0.1:8000). On SIGTERM it reports not-ready, finishes
    the requests in flight and exits within `api.shutdown_grace_s` (assistant/ops/server.py)."""
    # The server stack and the database layer are needed by this command only.
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from assistant.core.db import Databases, SchemaTooNew  # noqa: PLC0415
    from assistant.ops import server  # noqa: PLC0415

    settings = get_settings()
    _refuse_development_key(settings.privacy)
    # A database migrated by a newer release: refuse to start (exit 2) rather than serve on it.
    # Migrated here once; the server's own Services finds it at head.
    databases = Databases()
    try:
        databases.engine(settings.resolved_database_url)
    except SchemaTooNew as exc:
        err.print(exc.message("zh"), markup=False, style="red")
        err.print(exc.message("en"), markup=False, style="red")
        raise typer.Exit(code=2) from None
    except SQLAlchemyError as exc:
        # Not reachable yet: the replica starts, reports not-ready and migrates once it answers.
        err.print(f"数据库暂时连不上，服务照常启动，等数据库恢复后就绪（/readyz）：{type(exc).__name__}",
                  markup=False, style="yellow")
    finally:
        databases.dispose()
    # The server builds its own Services in the app's lifespan (assistant/api.py).
    server.run(settings, host=host or settings.api.host, port=port or settings.api.port)


def _refuse_development_key(privacy: PrivacySettings) -> None:
    """Residents' ID and phone numbers must not be encrypted with a key printed in the source."""
    try:
        refuse_development_key(privacy)
    except LinliError as exc:
        err.print(exc.message("zh"), markup=False, style="red")
        err.print(exc.message("en"), markup=False, style="red")
        raise typer.Exit(code=2) from None


@app.command()
def keygen(
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the key to this file (mode 600)")] = None,
) -> None:
    """A new data key for LINLI_PRIVACY__DATA_KEY (encrypts residents' ID and phone numbers)."""
    key = generate_key()
    if out_file is None:
        sys.stdout.write(key + "\n")
        return
    private_file(out_file).write_text(key + "\n", encoding="ascii")
    err.print(f"数据密钥已写入 {out_file}（仅本人可读）。请妥善备份：丢失密钥就无法读出已加密的个人信息。",
              markup=False)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=False)


@kb_app.command("build")
def kb_build(
    ctx: typer.Context,
    if_missing: Annotated[bool, typer.Option("--if-missing", help="Do nothing when an index exists")] = False,
) -> None:
    """Full rebuild of the index from the shipped corpus and the statute articles, keeping the
    documents added since (`kb add`, the admin pages) and those retired."""
    # Heavy (see the docstring); the knowledge base below imports it anyway.
    from knowledge_base.chunking import chunk_document  # noqa: PLC0415

    kb = _services(ctx).knowledge_base
    if if_missing and kb.is_built():
        err.print(f"索引已存在：{kb.settings.resolved_index_dir}（跳过）")
        return
    try:
        docs, retired = kb.rebuild_plan()
    except LinliError as exc:
        _fail(exc, False)
        return
    total = sum(len(chunk_document(d)) for d in docs)
    with _progress() as progress:
        task = progress.add_task("建立索引 / embedding chunks", total=total)
        report = kb.build(docs, progress=lambda n, _t: progress.advance(task, n), retired=retired)
    err.print(
        f"索引完成：{report.documents} 篇文档，{report.chunks} 个片段，用时 {report.seconds:.1f} 秒"
        f"（{report.chunks_per_second:.1f} 片段/秒） → {kb.settings.resolved_index_dir}"
    )


@kb_app.command("ship-vectors")
def kb_ship_vectors(ctx: typer.Context) -> None:
    """Write knowledge_base/data/vectors/: the vectors of the shipped corpus (passages, answer
    sentences) and the intent examples, which a fresh machine copies instead of embedding them."""
    # Intent examples are embedded at start-up too; this command alone needs their texts.
    from intents.classifier import DATA_FILE, _clean, load_intent_data  # noqa: PLC0415

    kb = _services(ctx).knowledge_base
    examples = load_intent_data(DATA_FILE)[0]
    path, rows = kb.ship_vectors(_clean(e.text) for e in examples)
    err.print(f"已写出 {rows} 个向量：{path}（{path.stat().st_size / 1e6:.1f} MB）")


@kb_app.command("add")
def kb_add(ctx: typer.Context, path: Path) -> None:
    """Add (or replace with a new version) the document(s) at PATH."""
    try:
        ids = _services(ctx).kb_admin.add_now(path, _cli_actor())
    except LinliError as exc:
        _fail(exc, False)
        return
    out.print(f"已加入知识库：{', '.join(ids)}")


@kb_app.command("remove")
def kb_remove(ctx: typer.Context, doc_id: str) -> None:
    """Remove a document and all its chunks."""
    try:
        _services(ctx).kb_admin.remove_now(doc_id, _cli_actor())
    except LinliError as exc:
        _fail(exc, False)
        return
    out.print(f"已删除：{doc_id}")


@kb_app.command("list")
def kb_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    include_law: Annotated[bool, typer.Option("--include-law", help="Also list statute articles")] = False,
) -> None:
    """List indexed documents."""
    docs = [d for d in _services(ctx).knowledge_base.store.list_documents() if include_law or d["category"] != "law"]
    if as_json:
        _emit_json({"documents": docs})
        return
    table = Table("id", "title", "category", "region", "lang", "version", "chunks")
    for d in docs:
        table.add_row(d["doc_id"], d["title"], d["category"], d["region"], d["language"], d["version"],
                      str(d["chunks"]))
    out.print(table)
    out.print(f"{len(docs)} documents")


@kb_app.command("show")
def kb_show(ctx: typer.Context, doc_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one document's metadata and chunks."""
    try:
        meta, _body, chunks = _services(ctx).knowledge_base.store.get_document(doc_id)
    except LinliError as exc:
        _fail(exc, as_json)
        return
    payload = {
        "doc_id": meta.doc_id, "title": meta.title, "category": meta.category, "region": meta.region,
        "source": meta.source, "version": meta.version, "language": meta.language,
        "effective_from": meta.effective_from.isoformat() if meta.effective_from else None,
        "effective_to": meta.effective_to.isoformat() if meta.effective_to else None,
        "chunks": [{"chunk_id": c.chunk_id, "section": c.section, "start": c.start, "end": c.end, "text": c.text}
                   for c in chunks],
    }
    if as_json:
        _emit_json(payload)
        return
    out.print(f"[bold]{meta.title}[/bold]  ({meta.doc_id}, {meta.category}, {meta.region}, v{meta.version})")
    out.print(f"来源：{meta.source}")
    for c in chunks:
        out.print(f"\n[dim]{c.chunk_id} · {c.section} · {c.start}-{c.end}[/dim]\n{c.text}")


@app.command("eval")
def eval_command(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(
        help="golden (default), resident, intents, dialogue, asr or faithfulness")] = "golden",
    dataset: Annotated[Path | None, typer.Option(help="A BEIR-style folder (corpus/queries/qrels.jsonl)")] = None,
    report: Annotated[Path | None, typer.Option(help="Where to write the JSON report")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N questions")] = None,
    whole_index: Annotated[bool | None, typer.Option(
        "--whole-index/--dataset-index",
        help="--dataset: search the shipped index (policies and statutes together) or an index of the dataset's "
             "corpus alone; default: the shipped index when the corpus is the shipped law corpus")] = None,
    split: Annotated[str, typer.Option(help="--dataset: dev, test, all, or each (all three tables); "
                                            "resident: dev, heldout, or each/all (both)")] = "each",
) -> None:
    """Retrieval and answer quality side by side (golden set, the residents' set, or an external dataset)."""
    # The evaluations are heavy (see the docstring) and needed by this command only.
    from eval.asr import run_asr  # noqa: PLC0415
    from eval.dialogue import run_dialogue  # noqa: PLC0415
    from eval.faithfulness import run_faithfulness  # noqa: PLC0415
    from eval.harness import run_external, run_golden  # noqa: PLC0415
    from eval.intents import run_intents  # noqa: PLC0415
    from eval.resident import run_resident  # noqa: PLC0415

    services = _services(ctx)
    settings = services.settings
    if what == "asr":
        result = run_asr(services, console=out, limit=limit)
        dataset = Path("asr")
    elif what == "intents":
        result = run_intents(services.classifier, console=out)
        dataset = Path("intents")
    elif what == "dialogue":
        _ensure_built(services.knowledge_base, False)
        result = run_dialogue(services, console=out, limit=limit)
        dataset = Path("dialogue")
    elif what == "resident":
        if split not in ("dev", "heldout", "all", "each"):
            raise typer.BadParameter(f"unknown split {split!r}: use dev, heldout, all or each")
        _ensure_built(services.knowledge_base, False)
        result = run_resident(services.knowledge_base, limit=limit, console=out,
                              split="all" if split == "each" else split)
        dataset = Path("resident")
    elif what == "faithfulness":
        # The extractive composer against a scripted fake LLM composer on the golden set (eval/faithfulness.py).
        if split not in ("dev", "test", "all", "each"):
            raise typer.BadParameter(f"unknown split {split!r}: use dev, test or all")
        _ensure_built(services.knowledge_base, False)
        result = run_faithfulness(services.knowledge_base, limit=limit, console=out,
                                  split="all" if split == "each" else split)
        dataset = Path("faithfulness")
    elif what != "golden":
        raise typer.BadParameter(
            f"unknown evaluation {what!r}: use golden, resident, intents, dialogue, asr or faithfulness")
    elif dataset is not None:
        if split not in ("dev", "test", "all", "each"):
            raise typer.BadParameter(f"unknown split {split!r}: use dev, test, all or each")
        result = run_external(settings, dataset, limit=limit, console=out, split=split, whole_index=whole_index)
    else:
        kb = services.knowledge_base
        _ensure_built(kb, False)
        result = run_golden(kb, limit=limit, console=out)
    target = report or settings.data_dir / "eval" / ("report-" + (dataset.name if dataset else "golden") + ".json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    out.print(f"report: {target}")


def _refuse(payload: dict, as_json: bool, code: int) -> NoReturn:
    """An application Linli will not file: the JSON payload, or its messages for a person."""
    if as_json:
        _emit_json(payload)
    else:
        for line in [e["message"] for e in payload.get("errors", [])] or [payload.get("reason", "")]:
            err.print(line, style="red", markup=False)
    raise typer.Exit(code)


@app.command()
def procedures(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The government procedures Linli can file, with their fields."""
    described = [p.describe() for p in _services(ctx).procedures.all().values()]
    if as_json:
        _emit_json({"procedures": described})
        return
    for proc in described:
        fields = ", ".join(f"{f['name']}:{f['type']}{'*' if f['required'] else ''}" for f in proc["fields"])
        typer.echo(f"{proc['id']}\t{proc['title']['zh']}\t{fields}")


@app.command()
def apply(
    ctx: typer.Context,
    procedure_id: str,
    data: Annotated[Path, typer.Option(help="A JSON file with the application's fields")],
    idempotency_key: Annotated[str | None, typer.Option(help="The same key twice files once")] = None,
    session: Annotated[str, typer.Option(help="Session the status notices go to")] = "cli",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """File an application: validate, check eligibility, store it in the outbox, try to submit."""
    try:
        payload = json.loads(data.read_text(encoding="utf-8"))
        if not isinstance(payload, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        _refuse({"errors": [{"field": "data", "message": f"读不了申请数据文件：{exc}"}]}, as_json, 2)
    service = _services(ctx).applications
    try:
        # The command line is the operator's, on the server: residents' filing limits do not apply.
        application = service.confirm(procedure_id, payload, session_id=session, channel="cli", user_id=session,
                                      idempotency_key=idempotency_key, limited=False)
    except InvalidApplication as exc:
        _refuse({"errors": exc.errors}, as_json, 2)
    except Ineligible as exc:
        _refuse({"eligible": False, "reason": exc.message("zh"), "citations": exc.citations}, as_json, 3)
    except LinliError as exc:
        _fail(exc, as_json)
        return
    if application.status == "queued":
        application = service.deliver_now(application.application_id)
    result = {"reference": application.application_id, "status": application.status}
    if as_json:
        _emit_json(result)
    else:
        out.print(f"申请编号 {result['reference']}，状态：{result['status']}")


@app.command()
def status(ctx: typer.Context, reference: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Where an application stands, with its history."""
    service = _services(ctx).applications
    try:
        service.refresh()
        result = service.status(reference)
    except LinliError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        _emit_json(result)
        return
    out.print(f"{result['reference']}（{result['procedure']}）：{result['status']}")
    for step in result["history"]:
        out.print(f"  {step['at'][:19]}  {step['status']}  {step['detail'] or ''}", markup=False)


@app.command()
def worker(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option(help="Do one round of what is due, and exit")] = False,
    name: Annotated[str | None, typer.Option(help="This worker's name in leases")] = None,
) -> None:
    """The background work (any number may run at once; each piece of work is leased): deliver the
    application outbox and follow status changes, run knowledge-base jobs, sweep SLA breaches,
    pre-count analytics, answer WeChat messages and send their pushes. Stops cleanly on SIGTERM."""
    from assistant.background import BackgroundWork  # noqa: PLC0415 - loads the features it runs
    from assistant.ops.logs import configure_logging  # noqa: PLC0415 - the worker's log lines, as the server's

    services = _services(ctx)
    configure_logging(services.settings.observability)
    _refuse_development_key(services.settings.privacy)
    me = name or f"{socket.gethostname()}-{os.getpid()}"
    os.nice(services.settings.connectors.worker_nice)
    stopping = threading.Event()
    if not once:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
    # The channels' own work (WeChat's messages and pushes): every round with --once, else each
    # its own thread polling faster.
    channel_work = [plugin.background(services) for plugin in enabled_channels(services.settings)
                    if plugin.background is not None]
    channel_threads = [channel.start_thread(me) for channel in channel_work] if not once else []
    work = BackgroundWork(services, me)
    while not stopping.is_set():
        for channel in channel_work if once else []:
            while channel.work(me):
                pass
        report = work.round()
        if report.did_something:
            out.print(f"[{me}] 提交 {report.delivered} 件，状态更新 {report.refreshed} 件，"
                      f"知识库任务 {report.kb_jobs} 个，超时工单 {report.swept} 张")
        if once:
            break
        stopping.wait(services.settings.connectors.worker_interval_s)
    for thread in channel_threads:
        thread.stop()


def _password(env_var: str | None) -> str:
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            out.print(f"环境变量 {env_var} 没有设置密码。", style="red")
            raise typer.Exit(2)
        return value
    return typer.prompt("密码 / password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    username: str,
    role: Annotated[str, typer.Option(help="worker, supervisor or admin")] = "worker",
    centre: Annotated[str, typer.Option(help="The centre whose queue the worker sees")] = "default",
    display_name: Annotated[str | None, typer.Option(help="Name shown to colleagues")] = None,
    password_env: Annotated[str | None, typer.Option(help="Read the password from this environment variable")] = None,
) -> None:
    """Create a console account (the password is stored as an argon2 hash)."""
    try:
        actor = _services(ctx).users.add(username, _password(password_env), role=role, centre=centre,
                                         display_name=display_name)
    except LinliError as exc:
        out.print(exc.message("zh"), style="red")
        raise typer.Exit(2) from exc
    out.print(f"已创建 {actor.username}（{actor.role} · {actor.centre}）")


@users_app.command("list")
def users_list(ctx: typer.Context) -> None:
    """List console accounts."""
    for actor in _services(ctx).users.list():
        typer.echo(f"{actor.username}\t{actor.role}\t{actor.centre}\t{actor.display_name}")


@users_app.command("passwd")
def users_passwd(ctx: typer.Context, username: str,
                 password_env: Annotated[str | None, typer.Option()] = None) -> None:
    """Set a new password (signs the user out everywhere)."""
    _services(ctx).users.set_password(username, _password(password_env))
    out.print(f"已更新 {username} 的密码")


@conversation_app.command("show")
def conversation_show(
    ctx: typer.Context,
    session: Annotated[str, typer.Argument(help="The conversation's session id")],
    limit: Annotated[int, typer.Option(help="The last N turns")] = 200,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A conversation turn by turn: what the resident said, what Linli replied and why (handler,
    intent), and what each reply changed in the conversation's state. ID and phone numbers are
    masked, as in every stored turn."""
    turns = _services(ctx).conversations.history(session, limit)
    if not turns:
        err.print(f"没有这个会话：{session} / no conversation {session!r}", style="red", markup=False)
        raise typer.Exit(1)
    if as_json:
        _emit_json({"session_id": session, "turns": turns})
        return
    for number, turn in enumerate(turns, 1):
        when = turn["created_at"][11:19]
        if turn["role"] != "assistant":
            out.print(f"[bold]#{number} {turn['role']}[/bold] {when}  ", end="")
            out.print(turn["text"], markup=False)
            continue
        trace = turn.get("trace") or {}
        why = " · ".join(str(x) for x in (turn.get("reply_type"), trace.get("handler"), trace.get("intent")) if x)
        out.print(f"[bold]#{number} linli[/bold] {when}  [dim]{why}[/dim]")
        out.print(f"    {turn['text']}", markup=False)
        for change in trace.get("changes") or []:
            out.print(f"      {_change_line(change)}", style="cyan", markup=False)


def _change_line(change: dict) -> str:
    """One state change as a line: + set, ~ changed, - cleared."""
    path, before, after = change.get("path"), change.get("from"), change.get("to")
    if before is None:
        return f"+ {path} = {after!r}"
    if after is None:
        return f"- {path} (was {before!r})"
    return f"~ {path}: {before!r} → {after!r}"


@tickets_app.command("list")
def tickets_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Open tickets of every centre, most urgent first."""
    found = _services(ctx).escalation.list(SYSTEM, statuses=list(OPEN))
    if as_json:
        _emit_json({"tickets": [t.public() for t in found]})
        return
    for t in found:
        typer.echo(f"{t.ticket_id}\t{t.priority}\t{t.status}\t{t.kind}\t{t.centre}\t{t.summary[:40]}")


@tickets_app.command("sweep")
def tickets_sweep(ctx: typer.Context) -> None:
    """Flag tickets past their claim deadline and escalate them to a supervisor."""
    flagged = _services(ctx).escalation.sweep_breaches()
    out.print(f"超时升级 {len(flagged)} 张工单：{', '.join(flagged) or '无'}")


# `linli cluster`: HAProxy, replicas, workers, PostgreSQL and Redis on this machine (assistant/cluster.py).
app.command("cluster")(cluster_command)

if __name__ == "__main__":  # pragma: no cover
    app()
