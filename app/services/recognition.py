"""Enrolment, identification and the gallery: the service's logic, free of HTTP."""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import crud
from app.db.models import FaceRecord, Identity
from app.services.errors import IdentityExists, InvalidParameter, MultipleFaces, NoFaceFound, UnknownIdentity
from app.services.gate import InferenceGate
from app.services.images import DecodedImage, decode_image
from app.services.index import SnapshotRead, VectorIndex
from app.services.replication import ChangeListener, SnapshotSlot
from app.telemetry import Telemetry
from models.metrics import idrate
from models.pipeline import FacePipeline
from models.scoring import cosine_matrix
from models.timing import Timings
from models.types import Face

log = logging.getLogger(__name__)
REPORT_FPRS = [1e-1, 1e-2, 1e-3, 1e-4]
COHORT_TERMS_KEPT = 200_000  # stored faces' cohort terms kept in memory (~30 MB)


@dataclass
class Upload:
    """One uploaded file."""

    filename: str
    data: bytes


@dataclass
class Candidate:
    identity_id: int
    name: str
    similarity: float


@dataclass
class IdentifiedFace:
    face: Face
    candidates: list[Candidate]
    match: Candidate | None


@dataclass
class IdentifyResult:
    faces: list[IdentifiedFace]
    threshold: float
    fpr: float
    faces_found: int
    skipped: list[dict] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)


@dataclass
class VerifyResult:
    """1:1 comparison: the best face of photo A against photo B's best face, or against every face
    of an enrolled identity made by the loaded model (its best score counts, as in /identify)."""

    score: float
    threshold: float
    fpr: float
    face_a: Face
    faces_found_a: int
    face_b: Face | None = None
    faces_found_b: int | None = None
    identity: Identity | None = None
    faces_compared: int = 1
    timings: Timings = field(default_factory=Timings)

    @property
    def same(self) -> bool:
        return self.score > self.threshold


def threshold_for_fpr(table: dict[float, float], fpr: float) -> float:
    """Similarity threshold for ``fpr``, interpolated in log(FPR) between calibrated points."""
    fprs = sorted(table)
    if not fprs[0] <= fpr <= fprs[-1]:
        raise InvalidParameter(
            f"fpr={fpr:g} is outside the calibrated range [{fprs[0]:g}, {fprs[-1]:g}]; "
            "pick a value inside it (default 1e-3)",
            parameter="fpr",
        )
    xs = [math.log10(f) for f in fprs]
    return float(np.interp(math.log10(fpr), xs, [table[f] for f in fprs]))


class RecognitionService:
    """Owns the pipeline, the index and the database sessions. Loaded once at start-up."""

    def __init__(
        self,
        settings: Settings,
        pipeline: FacePipeline,
        sessions: sessionmaker,
        telemetry: Telemetry | None = None,
        slot: SnapshotSlot | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry or Telemetry()
        self.pipeline = pipeline
        self.sessions = sessions
        self.model_version = pipeline.version
        self.thresholds = pipeline.embedder.card.thresholds()
        if not self.thresholds:
            raise ValueError(
                f"model card of {settings.weights} has no calibrated thresholds; "
                "run training.evaluate --update-card on it"
            )
        self.slot = slot or SnapshotSlot(settings.state_dir)  # this process's own snapshot file
        self.index = VectorIndex(pipeline.embedder.dim, self.slot.path, settings.index_params)
        # One lock orders every index access: FAISS is not safe for a search during an add/remove,
        # and changes are applied from the log in order (app.services.replication).
        self.lock = threading.Lock()
        self.applied = 0  # the gallery generation the index reflects
        self.index_reused = False  # set by sync_index: whether the saved index matched the database
        self.database_error: str | None = None  # the follower's last failure to read the database
        self._unsaved: int | None = None  # generation of index changes not yet saved
        self._stop = threading.Event()
        self._save_soon = threading.Event()  # the saver's cue: a small index has changes to save
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.listener: ChangeListener | None = None
        self._terms: OrderedDict[tuple[int, int], float] = OrderedDict()  # see _cohort_terms
        self._terms_lock = threading.Lock()
        # The networks use every core for one photo: many photos at once only share the cores and
        # thrash their thread pools, so at most inference_concurrency run at a time (the rest of a
        # request -- decoding, the database, the search -- still overlaps). On this 2-core CPU, two
        # runs each (bench/results/inference_gate.json): with 2, 16 clients got 29.9 / 31.0 req/s
        # against 30.4 / 31.6 for 4; with no limit 29.2 / 22.0 against 33.7 / 28.8. A photo that
        # enters while another is inside runs on one thread (app.services.gate says why).
        self._inference = InferenceGate.for_pipeline(settings, pipeline)

    # -- start-up and replication (app.services.replication states the protocol) ------------
    def sync_index(self, read: SnapshotRead | None = None) -> bool:
        """Load this process's snapshot and catch up from the change log, else rebuild from the database.

        The check reads a few numbers from the database, not its embeddings, so a large gallery
        restarts in seconds; the embeddings are read only when a rebuild is needed. ``read``: the
        snapshot's read, when the caller started it earlier (``app.main.build_service``).

        Returns:
            True when the snapshot was reused (caught up from the log), False when it was rebuilt.
        """
        with self.sessions() as session:
            generation = crud.generation(session=session)
            oldest = crud.oldest_change(session=session)
            stale = crud.count_faces_of_other_versions(session=session, model_version=self.model_version)
        if stale:
            log.warning(
                "%d enrolled faces were made by another model version and are not searchable; re-enroll them for %s",
                stale,
                self.model_version,
            )
        with self.lock:
            saved = self.index.load(self._usable_generation(generation, oldest), read)
            if saved is not None:
                self.applied = saved
                self._catch_up()
                with self.sessions() as session:
                    count = crud.count_faces_of_version(session=session, model_version=self.model_version)
                    at = crud.generation(session=session)
                if at == self.applied and count != len(self.index):
                    log.warning("snapshot holds %d vectors, the database %d; rebuilding", len(self.index), count)
                    saved = None
                else:
                    log.info(
                        "index %s: snapshot of generation %d caught up to %d (%d vectors, %s)",
                        self.index.path,
                        saved,
                        self.applied,
                        len(self.index),
                        self.index.kind,
                    )
            if saved is None:
                self._rebuild()
            self.index_reused = saved is not None
        return self.index_reused

    @staticmethod
    def _usable_generation(generation: int, oldest: int | None):
        """Which snapshot generations can be caught up: the database's own, or any the log continues."""

        def usable(saved: int) -> str | None:
            if saved == generation:
                return None
            if saved > generation:
                return f"the snapshot is of generation {saved}, ahead of the database's {generation}"
            if oldest is None or oldest > saved + 1:
                return f"the change log no longer reaches back to generation {saved} (the database is at {generation})"
            return None

        return usable

    def _rebuild(self) -> None:
        """The index from every face of the loaded model, at a generation read on both sides of the
        read (retried if a write came between), then saved (lock held)."""
        for _ in range(10):
            with self.sessions() as session:
                before = crud.generation(session=session)
                ids, _, vectors = crud.embeddings(
                    session=session, model_version=self.model_version, dim=self.pipeline.embedder.dim
                )
                if crud.generation(session=session) == before:
                    break
        self.index.rebuild(ids, vectors)
        self.applied = before
        self.index.save(before)
        self._unsaved = None
        log.warning("rebuilt the index from the database: %d vectors at generation %d", len(ids), before)

    def _catch_up(self) -> None:
        """Apply every logged change after ``self.applied`` in order, then save as ``_save_index``
        says (lock held). Falls back to a rebuild when the log no longer reaches back far enough."""
        with self.sessions() as session:
            generation = crud.generation(session=session)
            if generation == self.applied:
                return
            oldest = crud.oldest_change(session=session)
            if self._usable_generation(generation, oldest)(self.applied) is not None:
                self._rebuild()
                return
            changes = crud.changes_since(session=session, after=self.applied, upto=generation)
            if [c[0] for c in changes] != list(range(self.applied + 1, generation + 1)):
                # Entries pruned since the check above (the log is numbered without gaps otherwise).
                self._rebuild()
                return
            removed = False
            # Runs of equal operations are applied together; order across runs is kept (SQLite may
            # hand a removed face's id out again).
            run_start = 0
            for i in range(1, len(changes) + 1):
                if i < len(changes) and changes[i][1] == changes[run_start][1]:
                    continue
                op, face_ids = changes[run_start][1], [c[2] for c in changes[run_start:i]]
                if op == "remove":
                    self.index.remove(np.array(face_ids, np.int64))
                    removed = True
                else:
                    for chunk in range(0, len(face_ids), 5000):
                        ids, vectors = crud.face_vectors(
                            session=session,
                            face_ids=face_ids[chunk : chunk + 5000],
                            model_version=self.model_version,
                            dim=self.pipeline.embedder.dim,
                        )
                        self.index.add(ids, vectors)
                run_start = i
        self.applied = generation
        self._save_index(generation, removed)

    def _save_index(self, generation: int, removed: bool = False) -> None:
        """After changes were applied (lock held): rebuild the index if the gallery changed kind
        (exact <-> HNSW) or the graph carries too many tombstones, then persist it.

        A small index (up to ``index_sync_save_max`` vectors) is saved right after every addition by
        the background saver, not by the request: the write and its two fsyncs cost an enrolment
        ~2.6 ms of its ~30 (py-spy on the enrolment benchmark), and the response need not wait for
        them -- the rows are committed and the index in memory is up to date. A large one (20k exact
        vectors are a 40 MB file, 1M in HNSW over a gigabyte) is saved after additions within
        ``index_save_interval_s``. Both are saved at shutdown; a crash in between costs a catch-up
        from the log (or a rebuild) at the next start, never a lost or wrong answer. After a removal
        the index is always saved at once, by the request: a deleted person's vectors must not stay
        on disk until the next save. Without the saver (``start_background`` not called) every
        change is saved at once."""
        if self.index.needs_rebuild():
            log.info("gallery of %d vectors outgrew its %s index; rebuilding", len(self.index), self.index.kind)
            self._rebuild()
            return
        saver = bool(self._threads)
        if removed or not saver:
            self.index.save(generation)
            self._unsaved = None
        else:
            self._unsaved = generation
            if len(self.index) <= self.settings.index_sync_save_max:
                self._save_soon.set()

    def follow(self) -> None:
        """Catch up whenever the database's generation moved (woken by the listener or the poll)."""
        try:
            with self.sessions() as session:
                generation = crud.generation(session=session)
            if generation != self.applied:
                with self.lock:
                    self._catch_up()
            if self.database_error is not None:
                log.warning("database reachable again; the index is at generation %d", self.applied)
            self.database_error = None
        except SQLAlchemyError as exc:
            if self.database_error is None:
                log.warning("cannot read the database to follow its changes: %s", exc)
            self.database_error = str(exc).splitlines()[0]

    def flush_index(self) -> bool:
        """Save the index if writes are pending; True if it saved. Called by the saver and at shutdown."""
        with self.lock:
            if self._unsaved is None:
                return False
            self.index.save(self._unsaved)
            self._unsaved = None
            return True

    def start_background(self, engine: Engine | None = None) -> None:
        """The saver (a large index at most every ``index_save_interval_s``), the follower (every
        ``sync_interval_s``, or at once when woken) and, on PostgreSQL, the change listener."""

        def save() -> None:
            while not self._stop.is_set():
                self._save_soon.wait(self.settings.index_save_interval_s)
                self._save_soon.clear()
                if not self._stop.is_set():
                    self.flush_index()

        def follow() -> None:
            while not self._stop.is_set():
                self._wake.wait(self.settings.sync_interval_s)
                self._wake.clear()
                if not self._stop.is_set():
                    self.follow()

        for target, name in ((save, "index-saver"), (follow, "change-follower")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if engine is not None and engine.dialect.name == "postgresql":
            self.listener = ChangeListener(engine, self._wake, self._stop)
            self.listener.start()
            self._threads.append(self.listener.thread)

    def close(self) -> None:
        """Stop the background threads, save pending index changes (graceful shutdown) and free the
        snapshot slot."""
        self._stop.set()
        self._wake.set()
        self._save_soon.set()
        for thread in self._threads:
            thread.join()
        self.flush_index()
        self.slot.release()

    # -- inference helpers --------------------------------------------------------------------
    def decode(self, upload: Upload) -> DecodedImage:
        # Large JPEGs are decoded reduced, but never below the side the detector works at.
        return decode_image(
            upload.data,
            upload.filename,
            max_bytes=self.settings.max_upload_bytes,
            max_pixels=self.settings.max_image_pixels,
            work_side=self.pipeline.detector.max_side,
        )

    def faces(
        self, upload: Upload, timings: Timings | None = None, min_face: int | None = None
    ) -> tuple[list[Face], int]:
        """Faces of an upload (capped at ``max_faces``) and how many were found in all; boxes and
        points are in the uploaded photo's pixels. ``min_face`` overrides the detector's smallest face."""
        timings = Timings() if timings is None else timings
        before = dict(timings)
        with self._inference.arrive():
            with timings.stage("decode"):
                image = self.decode(upload)
            with self._inference() as shared:
                detections = self.pipeline.detect(image.pixels, timings, min_face)
                kept = detections[: self.settings.max_faces]
                faces = self.pipeline.embed_detections(image.pixels, kept, timings)
        self.telemetry.observe_stages({k: v - before.get(k, 0.0) for k, v in timings.items()})
        self.telemetry.faces.observe(len(detections))
        self.telemetry.inference.labels("one" if shared else "all").inc()
        return [f if image.scale == 1.0 else f.rescaled(1.0 / image.scale) for f in faces], len(detections)

    # -- enrolment ----------------------------------------------------------------------------
    def _check_enroll_params(self, name: str | None, identity_id: int | None, uploads: list[Upload]) -> None:
        if (name is None) == (identity_id is None):
            raise InvalidParameter(
                "give exactly one of 'name' (a new identity) or 'identity_id' (add faces to an existing one)",
                parameter="name",
            )
        if name is not None and not (0 < len(name.strip()) <= self.settings.max_name_length):
            raise InvalidParameter(
                f"name must be 1-{self.settings.max_name_length} characters, not blank; got {len(name)} characters",
                parameter="name",
            )
        if not uploads:
            raise InvalidParameter("no images: send one or more files in the 'images' field", parameter="images")
        if len(uploads) > self.settings.max_images_per_enroll:
            raise InvalidParameter(
                f"{len(uploads)} images sent; at most {self.settings.max_images_per_enroll} "
                "per request (FACEREC_MAX_IMAGES_PER_ENROLL); send the rest in another request with "
                "identity_id",
                parameter="images",
            )

    def enroll(
        self, *, name: str | None, identity_id: int | None, uploads: list[Upload]
    ) -> tuple[Identity, list[FaceRecord], int]:
        """Add one face per image to a new or existing identity: all images or none.

        Returns the identity, the new face records and the identity's face count after the change.
        """
        self._check_enroll_params(name, identity_id, uploads)
        name = name.strip() if name is not None else None
        if identity_id is not None:
            self.get_identity(identity_id)  # fail fast, before any detection work
        faces, min_face = [], self.settings.enroll_min_face
        for upload in uploads:
            # Only faces of enrolment size are looked for: a small face makes a poor template, a
            # small bystander should not block the photo, and the detector searches less.
            found, total = self.faces(upload, min_face=min_face)
            if total != 1:
                error = NoFaceFound if total == 0 else MultipleFaces
                raise error(
                    f"image {upload.filename!r} has {total} faces of at least {min_face} px; each "
                    "enrolment image must show exactly one (a smaller face is not enrolled: use a closer "
                    "photo, or lower FACEREC_ENROLL_MIN_FACE)",
                    image=upload.filename,
                    faces=total,
                )
            faces.append((upload.filename, found[0]))
        return self._store(name, identity_id, faces)

    def _store(
        self, name: str | None, identity_id: int | None, faces: list[tuple[str, Face]]
    ) -> tuple[Identity, list[FaceRecord], int]:
        """Write the rows in one transaction, then bring the index up to it from the change log
        before answering (the write is searchable here when the response leaves)."""
        with self.sessions() as session:
            try:
                identity = self._target_identity(session, name, identity_id)
                records = [
                    crud.add_face(
                        session=session,
                        identity=identity,
                        embedding=f.embedding,
                        model_version=self.model_version,
                        box=[float(v) for v in f.box],
                        det_score=f.score,
                        source=filename[:255],
                    )
                    for filename, f in faces
                ]
                crud.prune_changes(
                    session=session, generation=crud.generation(session=session), keep=self.settings.change_log_keep
                )
                session.commit()
            except IntegrityError:
                # The same name created meanwhile by another request, here or on another replica (the
                # unique index decides; PostgreSQL says so at the insert, SQLite at the latest at commit).
                session.rollback()
                existing = crud.get_identity_by_name(session=session, name=name) if name is not None else None
                raise IdentityExists(
                    f"an identity named {name!r} already exists"
                    + (f" (id {existing.id}); pass identity_id={existing.id}" if existing else "; pass its identity_id")
                    + " to add faces to it",
                    name=name,
                    **({"identity_id": existing.id} if existing else {}),
                ) from None
            with self.lock:
                self._catch_up()
            return identity, records, crud.count_faces(session=session, identity_id=identity.id)

    def _target_identity(self, session: Session, name: str | None, identity_id: int | None) -> Identity:
        if identity_id is not None:
            identity = crud.get_identity(session=session, identity_id=identity_id)
            if identity is None:
                raise UnknownIdentity(
                    f"no identity with id {identity_id}; list them at GET /identities", identity_id=identity_id
                )
            return identity
        existing = crud.get_identity_by_name(session=session, name=name)
        if existing is not None:
            raise IdentityExists(
                f"an identity named {name!r} already exists (id {existing.id}); pass "
                f"identity_id={existing.id} to add faces to it",
                identity_id=existing.id,
                name=name,
            )
        return crud.create_identity(session=session, name=name)

    # -- identification -----------------------------------------------------------------------
    def identify(self, *, upload: Upload, top_k: int, fpr: float | None) -> IdentifyResult:
        """Every face in the photo with its top-k identities and the match at the requested FPR."""
        if not 1 <= top_k <= self.settings.max_top_k:
            raise InvalidParameter(f"top_k={top_k} must be between 1 and {self.settings.max_top_k}", parameter="top_k")
        fpr = self.settings.default_fpr if fpr is None else fpr
        threshold = threshold_for_fpr(self.thresholds, fpr)
        timings = Timings()
        faces, total = self.faces(upload, timings)
        if not faces:
            return IdentifyResult([], threshold, fpr, 0, timings=timings)
        with timings.stage("search"):
            with self.lock:
                # An identity may own many faces: search deeper, then keep each identity's best.
                queries = np.stack([f.embedding for f in faces])
                sims, ids = self.index.search(queries, top_k * 8)
            candidates = self._candidates(queries, sims, ids, top_k)
        self.telemetry.observe_stages({"search": timings["search"]})
        identified = [
            IdentifiedFace(f, c, c[0] if c and c[0].similarity > threshold else None) for f, c in zip(faces, candidates)
        ]
        matched = sum(f.match is not None for f in identified)
        self.telemetry.identified.labels("match").inc(matched)
        self.telemetry.identified.labels("unknown").inc(len(identified) - matched)
        skipped = (
            [
                {
                    "reason": f"only the {self.settings.max_faces} highest-scoring faces are processed "
                    "(FACEREC_MAX_FACES)",
                    "count": total - len(faces),
                }
            ]
            if total > len(faces)
            else []
        )
        return IdentifyResult(identified, threshold, fpr, total, skipped, timings)

    def _candidates(self, queries: np.ndarray, sims: np.ndarray, ids: np.ndarray, top_k: int) -> list[list[Candidate]]:
        """Each query's best ``top_k`` identities, scored as the model card says.

        The index ranks by cosine; a cohort-scoring model re-scores those nearest faces with the
        stored embeddings. The search is deep (8 x top_k faces) and the cohort term moves scores by a
        few hundredths, so the best identity by the card's score is among them in practice."""
        embedder = self.pipeline.embedder
        valid = sorted({int(i) for i in ids.ravel() if i >= 0})
        cohort = embedder.card.scoring["method"] != "cosine"
        with self.sessions() as session:
            found = crud.faces_found(session=session, face_ids=valid, dim=embedder.dim if cohort else None)
        owner = {f: identity for f, (identity, _, _) in found.items()}
        names = {identity: name for identity, name, _ in found.values()}
        stored = {f: vector for f, (_, _, vector) in found.items()} if cohort else {}
        if stored:
            rescored_sims, rescored_ids = [], []
            query_terms = embedder.score.face_terms(queries)
            for query, query_term, row_ids in zip(queries, query_terms, ids):
                keep = [int(i) for i in row_ids if int(i) in stored]
                vectors = np.stack([stored[i] for i in keep]) if keep else np.zeros((0, embedder.dim), np.float32)
                # The card's score, with the stored faces' cohort terms kept between queries.
                scores = cosine_matrix(query[None], vectors)[0] - 0.5 * (query_term + self._cohort_terms(keep, vectors))
                order = np.argsort(-scores, kind="stable")
                rescored_sims.append(scores[order])
                rescored_ids.append(np.array(keep, np.int64)[order])
            sims, ids = rescored_sims, rescored_ids
        result = []
        for row_sims, row_ids in zip(sims, ids):
            best: dict[int, float] = {}
            for s, i in zip(row_sims, row_ids):
                person = owner.get(int(i))  # None for -1 padding or a face deleted meanwhile
                if person is not None and person not in best:
                    best[person] = float(s)
            ranked = sorted(best.items(), key=lambda kv: -kv[1])[:top_k]
            result.append([Candidate(p, names[p], s) for p, s in ranked])
        return result

    def _cohort_terms(self, face_ids: list[int], vectors: np.ndarray) -> np.ndarray:
        """Each stored face's cohort term (``models.scoring``), computed once and kept (LRU).

        With 8,153 cohort centres a term costs 4 M multiply-adds, and /identify re-scores 8 x top_k
        stored faces per query: recomputing them took 24 ms of a 69 ms request on a gallery of 80
        (bench/pipeline_speed.py). Keyed by face id *and* vector, so an id SQLite hands out again
        never reuses a stale term."""
        keys = [(i, hash(v.tobytes())) for i, v in zip(face_ids, vectors)]
        with self._terms_lock:
            missing = [k for k, key in enumerate(keys) if key not in self._terms]
        if missing:
            fresh = self.pipeline.embedder.score.face_terms(vectors[missing])
            with self._terms_lock:
                for k, term in zip(missing, fresh):
                    self._terms[keys[k]] = float(term)
                while len(self._terms) > COHORT_TERMS_KEPT:
                    self._terms.popitem(last=False)
        with self._terms_lock:
            out = []
            for key in keys:
                self._terms.move_to_end(key)
                out.append(self._terms[key])
        return np.array(out, np.float32)

    # -- verification -------------------------------------------------------------------------
    def _best_face(self, upload: Upload, field_name: str, timings: Timings) -> tuple[Face, int]:
        """The highest-scoring face of an upload, and how many were found; no face is a 422 that
        names the photo."""
        faces, total = self.faces(upload, timings)
        if not faces:
            raise NoFaceFound(
                f"no face found in {field_name} ({upload.filename!r}); send a photo where a face is visible "
                f"and at least {self.settings.detector_min_face} px (FACEREC_DETECTOR_MIN_FACE)",
                image=upload.filename,
                field=field_name,
            )
        return faces[0], total

    def verify(
        self, *, upload_a: Upload, upload_b: Upload | None, identity_id: int | None, fpr: float | None
    ) -> VerifyResult:
        """Are these the same person? The card's score and its threshold at ``fpr`` (default as /identify)."""
        if (upload_b is None) == (identity_id is None):
            raise InvalidParameter(
                "send image_a and either image_b (a second photo) or identity_id (an enrolled identity), "
                "not both and not neither",
                parameter="image_b",
            )
        fpr = self.settings.default_fpr if fpr is None else fpr
        threshold = threshold_for_fpr(self.thresholds, fpr)
        timings = Timings()
        face_a, found_a = self._best_face(upload_a, "image_a", timings)
        score = self.pipeline.embedder.score
        if upload_b is not None:
            face_b, found_b = self._best_face(upload_b, "image_b", timings)
            value = float(score(face_a.embedding[None], face_b.embedding[None])[0, 0])
            return VerifyResult(value, threshold, fpr, face_a, found_a, face_b, found_b, timings=timings)
        with self.sessions() as session:
            identity = crud.get_identity(session=session, identity_id=identity_id)
            if identity is None:
                raise UnknownIdentity(
                    f"no identity with id {identity_id}; list them at GET /identities", identity_id=identity_id
                )
            ids, _, vectors = crud.embeddings(
                session=session,
                identity_id=identity_id,
                model_version=self.model_version,
                dim=self.pipeline.embedder.dim,
            )
        if not len(ids):
            raise InvalidParameter(
                f"identity {identity_id} ({identity.name!r}) has no face made by the loaded model "
                f"{self.model_version}; re-enrol it (GET /identities/outdated lists such identities)",
                parameter="identity_id",
            )
        with timings.stage("search"):
            value = float(score(face_a.embedding[None], vectors)[0].max())
        return VerifyResult(
            value, threshold, fpr, face_a, found_a, identity=identity, faces_compared=len(ids), timings=timings
        )

    # -- gallery ------------------------------------------------------------------------------
    def list_identities(self, *, offset: int, limit: int, search: str | None = None) -> list[tuple[Identity, int]]:
        with self.sessions() as session:
            return crud.list_identities(session=session, offset=offset, limit=limit, search=search)

    def get_identity(self, identity_id: int) -> tuple[Identity, list[FaceRecord]]:
        with self.sessions() as session:
            identity = crud.get_identity(session=session, identity_id=identity_id)
            if identity is None:
                raise UnknownIdentity(
                    f"no identity with id {identity_id}; list them at GET /identities", identity_id=identity_id
                )
            return identity, list(identity.faces)

    def delete_identity(self, identity_id: int) -> int:
        """Remove the identity's rows and its vectors; returns how many faces went."""
        with self.sessions() as session:
            identity = crud.get_identity(session=session, identity_id=identity_id)
            if identity is None:
                raise UnknownIdentity(
                    f"no identity with id {identity_id}; list them at GET /identities", identity_id=identity_id
                )
            count = crud.count_faces(session=session, identity_id=identity_id)
            crud.delete_identity(session=session, identity=identity)
            crud.prune_changes(
                session=session, generation=crud.generation(session=session), keep=self.settings.change_log_keep
            )
            session.commit()
            crud.purge_journal(session=session)
        # After the commit: if we crash before the save, start-up catches up from the log.
        with self.lock:
            self._catch_up()
        return count

    def database_generation(self) -> int:
        with self.sessions() as session:
            return crud.generation(session=session)

    def replica_state(self, database_generation: int | None) -> dict:
        """What /health says about replication: snapshot, applied and database generations, lag."""
        return {
            "database": self.sessions.kw["bind"].dialect.name,
            "snapshot": self.index.path.name,
            "generation": self.applied,
            "database_generation": database_generation,
            "lag": None if database_generation is None else max(0, database_generation - self.applied),
            "listening": bool(self.listener and self.listener.connected),
        }

    def counts(self) -> dict:
        with self.sessions() as session:
            identities = crud.count_identities(session=session)
            other = crud.count_faces_of_other_versions(session=session, model_version=self.model_version)
        return {"identities": identities, "faces_indexed": len(self.index), "faces_other_model": other}

    def outdated_identities(self) -> list[tuple[Identity, int, int, list[str]]]:
        """Identities with faces the loaded model did not make (never searched: re-enrol them)."""
        with self.sessions() as session:
            return crud.outdated_identities(session=session, model_version=self.model_version)

    def gallery_idrate(self) -> dict | None:
        """The seed's TPR@FPR over the enrolled faces; ``None`` until two identities have two faces."""
        with self.sessions() as session:
            ids, owners, vectors = crud.embeddings(
                session=session, model_version=self.model_version, dim=self.pipeline.embedder.dim
            )
        people, counts = np.unique(owners, return_counts=True)
        multi = set(people[counts >= 2].tolist())
        if len(multi) < 2:
            return None
        is_query = np.array([o in multi for o in owners])
        points = idrate(
            vectors[is_query], owners[is_query], vectors[~is_query], REPORT_FPRS, self.pipeline.embedder.score
        )
        return {
            "faces": len(ids),
            "query_faces": int(is_query.sum()),
            "distractor_faces": int((~is_query).sum()),
            "identities_with_2_plus_faces": len(multi),
            "idrate": [vars(p) for p in points],
        }
