"""Typed errors raised by the core. The edges (CLI, API) map them to exit codes / HTTP problems
and show residents the Chinese (or English) message."""

from __future__ import annotations


class LinliError(Exception):
    http_status = 400
    code = "linli_error"

    def __init__(self, message_zh: str, message_en: str | None = None, **details: object) -> None:
        super().__init__(message_zh)
        self.message_zh = message_zh
        self.message_en = message_en or message_zh
        self.details = details

    def message(self, language: str = "zh") -> str:
        return self.message_en if language == "en" else self.message_zh

    def problem(self, language: str = "zh") -> dict[str, object]:
        return {"error": self.code, "message": self.message(language), **self.details}


class InvalidQuestion(LinliError):
    code = "invalid_question"
    http_status = 422


class IngestError(LinliError):
    code = "ingest_failed"
    http_status = 422


class UnknownDocument(LinliError):
    code = "unknown_document"
    http_status = 404


class IndexNotBuilt(LinliError):
    code = "index_not_built"
    http_status = 503


class UnknownTicket(LinliError):
    code = "unknown_ticket"
    http_status = 404


class NotAuthenticated(LinliError):
    code = "not_authenticated"
    http_status = 401


class Forbidden(LinliError):
    code = "forbidden"
    http_status = 403


class ClaimConflict(LinliError):
    code = "already_claimed"
    http_status = 409
