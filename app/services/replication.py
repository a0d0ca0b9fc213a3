"""How a replica stays in step with the database it shares with other replicas.

The protocol. The database is the source of truth; every process serving it (uvicorn workers on one
machine, processes on several machines) holds its own vector index in memory and its own snapshot
file, and follows the gallery's change log (migration 0004: written by triggers on ``faces``, in the
changing transaction, numbered by the gallery generation with no gaps, in commit order).

- *Own writes* are applied before the response: after its commit the replica catches up from the
  log, which holds its own change and any earlier one from elsewhere, in order.
- *Others' writes* arrive by the follower thread: woken at once by PostgreSQL's ``NOTIFY`` (the
  trigger sends it at commit; :class:`ChangeListener` holds the ``LISTEN``), else by polling the
  generation every ``FACEREC_SYNC_INTERVAL_S`` (SQLite, or while the listener reconnects).
- *Deletions* stop matching everywhere at once, whatever the lag: a search's face ids are resolved
  to identities in the database, and a deleted face has none. The vectors leave each replica's
  memory at its next catch-up and its snapshot file right after (a removal is saved at once).
- *Start-up*: the replica loads its snapshot (checked by CRC), then catches up from the snapshot's
  generation; a snapshot older than the log's first entry, or one whose size then disagrees with the
  database, is rebuilt from ``faces``.

Snapshots. Each process claims its own snapshot file in the state directory with an exclusive lock
(``faces.faiss``, then ``faces.1.faiss``, ...), so several workers on one directory never write the
same file; a restarted process takes any free slot and catches up from whatever generation it holds.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from pathlib import Path
from typing import IO

from sqlalchemy import Engine

log = logging.getLogger(__name__)

#: The channel migration 0004's trigger notifies at every commit that changes ``faces``.
CHANNEL = "facerec_gallery"


class SnapshotSlot:
    """An index snapshot path in ``state_dir`` that no other live process of this host holds."""

    def __init__(self, state_dir: Path, max_slots: int = 256) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        for k in range(max_slots):
            path = state_dir / ("faces.faiss" if k == 0 else f"faces.{k}.faiss")
            lock: IO = open(path.with_name(path.name + ".lock"), "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            self.path, self._lock = path, lock
            return
        raise RuntimeError(f"all {max_slots} index snapshot slots in {state_dir} are held by running processes")

    def release(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


class ChangeListener:
    """``LISTEN facerec_gallery`` on its own PostgreSQL connection; sets ``wake`` at every notification
    and once after each (re)connection (changes may have been missed while it was away). Reconnects
    with back-off; the follower's polling covers the gaps."""

    def __init__(self, engine: Engine, wake: threading.Event, stop: threading.Event) -> None:
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.wake, self.stop = wake, stop
        self.connected = False
        self.thread = threading.Thread(target=self._run, name="change-listener", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        import psycopg  # only with PostgreSQL

        backoff = 0.5
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected, backoff = True, 0.5
                    self.wake.set()
                    while not self.stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.wake.set()
            except psycopg.Error as exc:
                if self.connected:
                    log.warning("change listener lost the database (%s); polling until it is back", exc)
                self.connected = False
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
