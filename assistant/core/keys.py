"""Keys made of several values that must never run together: a message id within its
conversation, an idempotency key within its sender, a signature with its timestamp and nonce.
Joining them with a separator let different tuples spell the same key ("a:b" + "c" and "a" +
"b:c"); the SHA-256 of their JSON list cannot, and has a fixed length whatever the values are."""

from __future__ import annotations

import hashlib
import json


def digest_key(prefix: str, *parts: str) -> str:
    """`prefix` followed by the hex SHA-256 of the parts as a JSON list (64 characters)."""
    return prefix + hashlib.sha256(json.dumps(list(parts), ensure_ascii=False).encode()).hexdigest()
