"""A gallery generation counter, bumped by triggers on every change to the faces table.

The saved vector index records the generation it reflects; at start-up an equal generation (and
count) means the index can be reused without reading a single embedding. Triggers, not application
code, keep it: a change made by any client of the database file moves it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BUMP = "UPDATE gallery_state SET generation = generation + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "gallery_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False),
    )
    op.execute("INSERT INTO gallery_state (id, generation) VALUES (1, 0)")
    if op.get_bind().dialect.name != "sqlite":
        return
    for event in ("INSERT", "UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER faces_{event.lower()}_generation AFTER {event} ON faces BEGIN {BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_table("gallery_state")
        return
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER faces_{event}_generation")
    op.drop_table("gallery_state")
