"""The gallery's change log: one row per face added or removed, numbered by the generation.

Every replica of the service keeps its vector index in memory and follows this log to stay in step
with the database (``app.services.replication``). Triggers on ``faces`` write it, in the transaction
that changes the face, so no client of the database can change the gallery without a log entry.

Numbering. Each entry's ``seq`` is the gallery generation after that change: the trigger first
increments ``gallery_state.generation`` (one row, so concurrent writers queue on its row lock until
the first commits) and then logs under the new value. Entries therefore become visible in ``seq``
order with no gaps -- a reader that has applied everything up to ``g`` needs exactly the entries
``seq > g``. A PostgreSQL sequence would not do: its numbers are taken at insert time and committed
in any order, and a reader could pass over one still in flight.

On PostgreSQL the trigger also sends ``NOTIFY facerec_gallery`` (delivered at commit) so replicas
wake at once; polling is the fallback. The log is pruned to its last entries
(``FACEREC_CHANGE_LOG_KEEP``); a replica further behind rebuilds its index from ``faces``.
An UPDATE of a face row is logged as its removal and its addition.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: The channel the PostgreSQL trigger notifies (``app.services.replication`` listens on it).
CHANNEL = "facerec_gallery"

SQLITE_BUMP = "UPDATE gallery_state SET generation = generation + 1 WHERE id = 1"
SQLITE_LOG = (
    "INSERT INTO gallery_changes (seq, op, face_id) SELECT generation, '{op}', {row}.id FROM gallery_state WHERE id = 1"
)

POSTGRES_FUNCTION = f"""
CREATE FUNCTION facerec_log_face_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE g integer;
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE gallery_state SET generation = generation + 1 WHERE id = 1 RETURNING generation INTO g;
        INSERT INTO gallery_changes (seq, op, face_id) VALUES (g, 'remove', OLD.id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE gallery_state SET generation = generation + 1 WHERE id = 1 RETURNING generation INTO g;
        INSERT INTO gallery_changes (seq, op, face_id) VALUES (g, 'add', NEW.id);
    END IF;
    PERFORM pg_notify('{CHANNEL}', g::text);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "gallery_changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("op", sa.String(6), nullable=False),
        sa.Column("face_id", sa.Integer, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER faces_{event}_generation")
        add = f"{SQLITE_BUMP}; {SQLITE_LOG.format(op='add', row='NEW')};"
        remove = f"{SQLITE_BUMP}; {SQLITE_LOG.format(op='remove', row='OLD')};"
        op.execute(f"CREATE TRIGGER faces_insert_log AFTER INSERT ON faces BEGIN {add} END")
        op.execute(f"CREATE TRIGGER faces_delete_log AFTER DELETE ON faces BEGIN {remove} END")
        op.execute(f"CREATE TRIGGER faces_update_log AFTER UPDATE ON faces BEGIN {remove} {add} END")
    else:
        op.execute(POSTGRES_FUNCTION)
        op.execute(
            "CREATE TRIGGER faces_log AFTER INSERT OR UPDATE OR DELETE ON faces "
            "FOR EACH ROW EXECUTE FUNCTION facerec_log_face_change()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER faces_{event}_log")
            op.execute(
                f"CREATE TRIGGER faces_{event}_generation AFTER {event.upper()} ON faces BEGIN {SQLITE_BUMP}; END"
            )
    else:
        op.execute("DROP TRIGGER faces_log ON faces")
        op.execute("DROP FUNCTION facerec_log_face_change()")
    op.drop_table("gallery_changes")
