"""API keys: creation, revocation and checking. Keys are random; only their SHA-256 is stored.

A key is 32 random bytes (URL-safe base64 behind a ``frk_`` prefix), so a plain SHA-256 is enough:
there is nothing to brute-force that a slow password hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import sessionmaker

from app.db import crud
from app.db.models import ApiKey
from app.services.errors import Forbidden, InvalidApiKey, InvalidParameter, MissingApiKey

log = logging.getLogger(__name__)
#: What each role may do; ``admin`` may do everything ``read`` may.
ROLES = {"read": {"read"}, "admin": {"read", "admin"}}
KEY_PREFIX = "frk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's name and role (``insecure`` when auth is off)."""

    name: str
    role: str


class KeyStore:
    """Checks presented keys against the admin key from the environment and the database's keys."""

    def __init__(self, sessions: sessionmaker, admin_key: str | None, enabled: bool = True) -> None:
        self.sessions = sessions
        self.enabled = enabled
        self._admin_hash = hash_key(admin_key) if admin_key else None

    def create(self, *, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key: the stored record and the key itself (shown once, never stored)."""
        if role not in ROLES:
            raise InvalidParameter(f"role {role!r} is not one of {sorted(ROLES)}", parameter="role")
        if not name.strip():
            raise InvalidParameter("a key needs a non-blank name saying who or what uses it", parameter="name")
        key = new_key()
        with self.sessions() as session:
            record = crud.add_api_key(
                session=session, name=name.strip(), role=role, key_hash=hash_key(key), prefix=key[: len(KEY_PREFIX) + 6]
            )
            session.commit()
        return record, key

    def revoke(self, key_id: int) -> ApiKey | None:
        with self.sessions() as session:
            record = crud.revoke_api_key(session=session, key_id=key_id)
            session.commit()
        return record

    def list(self) -> list[ApiKey]:
        with self.sessions() as session:
            return crud.list_api_keys(session=session)

    def has_any_key(self) -> bool:
        if self._admin_hash:
            return True
        with self.sessions() as session:
            return crud.count_active_api_keys(session=session) > 0

    def authenticate(self, key: str | None, need: str) -> Principal:
        """The principal behind ``key`` if its role allows ``need`` (``read`` or ``admin``).

        Raises:
            MissingApiKey / InvalidApiKey (401), Forbidden (403).
        """
        if not self.enabled:
            return Principal("insecure-dev-mode", "admin")
        if not key:
            raise MissingApiKey(
                "this endpoint needs an API key in the X-API-Key header; create one with `python -m app.keys create`"
            )
        presented = hash_key(key)
        # compare_digest: the time taken does not depend on how much of the key matched.
        if self._admin_hash and hmac.compare_digest(presented, self._admin_hash):
            principal = Principal("FACEREC_ADMIN_KEY", "admin")
        else:
            with self.sessions() as session:
                record = crud.active_api_key(session=session, key_hash=presented)
            if record is None or not hmac.compare_digest(presented, record.key_hash):
                raise InvalidApiKey("the X-API-Key is not a valid, unrevoked key")
            principal = Principal(record.name, record.role)
        if need not in ROLES[principal.role]:
            raise Forbidden(
                f"key {principal.name!r} has role {principal.role!r}; this endpoint needs an {need!r} key",
                role=principal.role,
                needed=need,
            )
        return principal
