"""Worker accounts: argon2 password hashes, roles (worker, supervisor, admin), one centre each,
and opaque login tokens stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from assistant.core.clock import utcnow
from assistant.core.errors import LinliError, NotAuthenticated
from assistant.escalation.passwords import check_password
from assistant.escalation.service import Actor
from assistant.escalation.tables import auth_tokens, users

ROLES = ("worker", "supervisor", "admin")
_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown name as slow as one with a wrong password.
_DUMMY_HASH = _hasher.hash("linli-dummy-password")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserStore:
    def __init__(self, engine: Engine, token_ttl_hours: int = 12) -> None:
        self.engine = engine
        self.token_ttl = timedelta(hours=token_ttl_hours)

    def add(self, username: str, password: str, *, role: str = "worker", centre: str = "default",
            display_name: str | None = None) -> Actor:
        if role not in ROLES:
            raise LinliError(f"角色只能是 {', '.join(ROLES)}。", f"Role must be one of {', '.join(ROLES)}.")
        check_password(password, username)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(users).values(
                    username=username, display_name=display_name or username, password_hash=_hasher.hash(password),
                    role=role, centre=centre, active=True, created_at=utcnow()))
        except IntegrityError as exc:
            raise LinliError(f"用户 {username} 已存在。", f"User {username} already exists.") from exc
        return Actor(username, role, centre, display_name or username)

    def set_password(self, username: str, password: str) -> None:
        check_password(password, username)
        with self.engine.begin() as conn:
            conn.execute(update(users).where(users.c.username == username)
                         .values(password_hash=_hasher.hash(password)))
            conn.execute(delete(auth_tokens).where(auth_tokens.c.username == username))

    def list(self) -> list[Actor]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(users).order_by(users.c.username)).all()
        return [Actor(r.username, r.role, r.centre, r.display_name) for r in rows]

    def authenticate(self, username: str, password: str) -> Actor:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        try:
            _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            row = None
        if row is None or not row.active:
            raise NotAuthenticated("用户名或密码不正确。", "Wrong username or password.")
        return Actor(row.username, row.role, row.centre, row.display_name)

    def issue_token(self, actor: Actor) -> str:
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(insert(auth_tokens).values(token_hash=_token_hash(token), username=actor.username,
                                                    created_at=now, expires_at=now + self.token_ttl))
        return token

    def actor_for_token(self, token: str | None) -> Actor:
        if not token:
            raise NotAuthenticated("请先登录。", "Please log in.")
        with self.engine.connect() as conn:
            row = conn.execute(
                select(users).join(auth_tokens, auth_tokens.c.username == users.c.username)
                .where(auth_tokens.c.token_hash == _token_hash(token), auth_tokens.c.expires_at > utcnow(),
                       users.c.active.is_(True))
            ).first()
        if row is None:
            raise NotAuthenticated("登录已过期，请重新登录。", "Your session has expired; please log in again.")
        return Actor(row.username, row.role, row.centre, row.display_name)

    def revoke(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(auth_tokens).where(auth_tokens.c.token_hash == _token_hash(token)))
