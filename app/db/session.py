"""Engine, sessions and schema migration."""

from __future__ import annotations

import fcntl
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

import migrations

#: Found from the installed ``migrations`` package, not the working directory.
MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def make_engine(url: str, timeout_s: float = 5.0) -> Engine:
    """An engine for ``url``: SQLite (the embedded default) or PostgreSQL (``postgresql+psycopg://``).

    Every wait on the database is bounded by about ``timeout_s``, so an unreachable or stuck database
    becomes a clear error instead of a hung request: connecting, waiting for a pooled connection,
    a statement, a lock. Pooled connections are checked before use, so a restarted PostgreSQL is
    picked up again without restarting the service."""
    if url.startswith("postgresql"):
        millis = int(timeout_s * 1000)
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_timeout=timeout_s,
            pool_size=8,
            max_overflow=8,
            connect_args={
                "connect_timeout": max(1, round(timeout_s)),
                "options": f"-c statement_timeout={millis} -c lock_timeout={millis}",
            },
        )
    if not url.startswith("sqlite"):
        raise ValueError(f"database URL {url!r}: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": timeout_s})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        # Deleted rows are overwritten with zeros, not left in free pages: embeddings are biometric data.
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


#: PostgreSQL advisory-lock key held while migrating (any constant agreed by all replicas).
MIGRATION_LOCK = 0x66616365  # "face"


#: The newest migration in ``migrations/versions`` (a test holds it to Alembic's own answer).
SCHEMA_HEAD = "0004"


def alembic_config():
    """Alembic's configuration for our migrations (Alembic is imported here: see :func:`upgrade_database`)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at :data:`SCHEMA_HEAD` (one query; ``False`` when it has no schema yet)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [SCHEMA_HEAD]
    except SQLAlchemyError:  # no version table: a new database
        return False


def upgrade_database(engine: Engine) -> None:
    """Apply every Alembic migration (``alembic upgrade head``) on ``engine``, one process at a time:
    replicas or workers started together on a new database would otherwise all create its tables.
    PostgreSQL: a transaction-scoped advisory lock (the migrations run in that transaction).
    SQLite: an exclusive lock on a file beside the database.

    A database already at the newest migration is left as it is without Alembic: importing it and
    reading the migration scripts took ~0.35 s of every start (``app.main.build_service``)."""
    if schema_is_current(engine):
        return
    from alembic import command

    cfg = alembic_config()
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        lock = open(f"{engine.url.database}.migrate.lock", "a")  # noqa: SIM115 (closed below)
        fcntl.flock(lock, fcntl.LOCK_EX)
    else:
        lock = None
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
