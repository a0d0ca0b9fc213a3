"""ORM tables. The FAISS id of a vector is the primary key of its ``faces`` row."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Identity(Base):
    """An enrolled person."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    faces: Mapped[list["FaceRecord"]] = relationship(
        back_populates="identity", cascade="all, delete-orphan", passive_deletes=True, order_by="FaceRecord.id")


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    identity: Mapped[Identity] = relationship(back_populates="faces")
