"""ORM tables. The FAISS id of a vector is the primary key of its ``faces`` row."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, LargeBinary, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and read back timezone-aware (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    pass


class Identity(Base):
    """An enrolled person."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    faces: Mapped[list[FaceRecord]] = relationship(
        back_populates="identity", cascade="all, delete-orphan", passive_deletes=True, order_by="FaceRecord.id"
    )


class FaceRecord(Base):
    """One enrolled face: its embedding, the model version that made it, and where it came from.
    No photo is stored."""

    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), index=True)
    model_version: Mapped[str] = mapped_column(String(100), index=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    box: Mapped[list] = mapped_column(JSON)
    det_score: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    identity: Mapped[Identity] = relationship(back_populates="faces")


class ApiKey(Base):
    """An API key. Only its SHA-256 is stored: the key itself is shown once, when it is created."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16), doc="the key's first characters, to tell keys apart")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, default=None)


class GalleryState(Base):
    """One row: ``generation`` is bumped by database triggers on every change to ``faces`` (and
    numbers the change log)."""

    __tablename__ = "gallery_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)


class GalleryChange(Base):
    """The gallery's change log, written by triggers on ``faces`` (migration 0004 states the protocol):
    ``seq`` is the generation after the change, ``op`` is ``add`` or ``remove``."""

    __tablename__ = "gallery_changes"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    op: Mapped[str] = mapped_column(String(6))
    face_id: Mapped[int] = mapped_column(Integer)
