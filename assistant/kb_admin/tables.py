"""The knowledge base's change jobs and audit trail (migration 0010). They live in the main
database, not the index's, so that every server process (PostgreSQL in production) shows the same
progress and history whichever process runs the job."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Integer, String, Table, Text

from assistant.core.db import metadata

# One change an administrator asked for, run in the background by whichever process leases it.
kb_jobs = Table(
    "kb_jobs",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("action", String(16), nullable=False),  # upload | edit | retire | restore
    Column("actor", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # queued | running | done | failed
    Column("stage", String(16), nullable=False),  # waiting | embedding | indexing | finished
    Column("done", Integer, nullable=False),  # chunks embedded so far
    Column("total", Integer, nullable=False),  # chunks to embed
    Column("doc_ids", JSON, nullable=False),
    Column("summary", Text, nullable=False),  # what was asked, in Chinese, for the page
    Column("error_zh", Text),
    Column("error_en", Text),
    Column("created_at", DateTime, nullable=False, index=True),
    Column("updated_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    # What to do, so that any process can run it (migration 0012): the documents to index, the
    # ids to retire or restore, and the audit rows it writes when done.
    Column("payload", JSON),
    Column("lease_owner", String(128)),
    Column("lease_until", DateTime),
    Column("attempts", Integer, nullable=False, server_default="0"),
)

# Who changed which document, how and when: one row per document per finished change.
kb_audit = Table(
    "kb_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False, index=True),
    Column("actor", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # upload | edit | retire | restore
    Column("doc_id", String(160), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("version", String(40), nullable=False),
    Column("detail", Text, nullable=False),  # e.g. the file name, or "region: national → xinjiang"
    Column("job_id", String(32), nullable=False),
)
