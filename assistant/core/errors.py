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


class TooManyRequests(LinliError):
    """A rate limit was reached; `retry_after` (seconds) becomes the Retry-After header."""

    code = "too_many_requests"
    http_status = 429


class PayloadTooLarge(LinliError):
    code = "payload_too_large"
    http_status = 413


class WeakPassword(LinliError):
    code = "weak_password"
    http_status = 422


class InvalidRequest(LinliError):
    """A request body no endpoint can take (lone surrogates, numbers beyond 64 bits, nesting too deep)."""

    code = "invalid_request"
    http_status = 422


class CsrfRefused(LinliError):
    code = "cross_site_request"
    http_status = 403


class ConversationBusy(LinliError):
    """The conversation's previous message is still being handled (by this or another replica)
    for longer than the lock's wait: the message is refused, never handled beside the other."""

    code = "conversation_busy"
    http_status = 503
