"""Rules of the service that each have a setting or a contract: thresholds between calibrated FPRs,
the faces-per-photo cap, the images-per-enrolment cap, identity paging, one identity per name under
a race, migrations that build exactly the ORM's schema, and what a search's face ids resolve to."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.services.errors import InvalidParameter
from app.services.recognition import threshold_for_fpr
from app.testing import ROOT
from tests.helpers import files, make_client

pytestmark = pytest.mark.slow


def test_threshold_is_interpolated_in_log_fpr_between_calibrated_points():
    table = {1e-1: 0.2, 1e-2: 0.4, 1e-3: 0.7}
    assert threshold_for_fpr(table, 1e-2) == pytest.approx(0.4)
    # Halfway in log10 between 1e-2 and 1e-3 is 10**-2.5, halfway between their thresholds.
    assert threshold_for_fpr(table, 10**-2.5) == pytest.approx(0.55)
    # A quarter of the way in log10 from 1e-1 to 1e-2.
    assert threshold_for_fpr(table, 10**-1.25) == pytest.approx(0.25)
    for outside in (0.5, 1e-4):
        with pytest.raises(InvalidParameter, match="calibrated range"):
            threshold_for_fpr(table, outside)
    assert not math.isnan(threshold_for_fpr(table, 1e-3))


def test_every_pipeline_setting_is_read_from_the_environment_with_the_pipelines_defaults(monkeypatch, tmp_path):
    """What ``training.evaluate`` measures (``PipelineConfig()``) is what a service with no settings
    serves, and each of the pipeline's fields has its ``FACEREC_`` variable."""
    from dataclasses import fields

    from app.config import Settings
    from models.pipeline import PipelineConfig

    assert Settings(state_dir=tmp_path).pipeline_config == PipelineConfig()
    for name in [f.name for f in fields(PipelineConfig)]:
        assert name in Settings.model_fields, f"PipelineConfig.{name} has no FACEREC_{name.upper()}"
    monkeypatch.setenv("FACEREC_DETECTOR_PNET_THRESHOLD", "0.75")
    monkeypatch.setenv("FACEREC_DETECTOR_PYRAMID_FACTOR", "0.7")
    config = Settings(state_dir=tmp_path).pipeline_config
    assert (config.detector_pnet_threshold, config.detector_pyramid_factor) == (0.75, 0.7)
    for bad in ("0", "1", "1.5"):
        monkeypatch.setenv("FACEREC_DETECTOR_PNET_THRESHOLD", bad)
        with pytest.raises(ValueError, match="detector_pnet_threshold"):
            Settings(state_dir=tmp_path)


def test_faces_beyond_the_cap_are_skipped_and_counted(tmp_path: Path, data: Path):
    group = data / "photos" / "known_people" / "knn_examples" / "test" / "obama_and_biden.jpg"
    with make_client(tmp_path / "state", max_faces=1) as client:
        found = []
        for route in ("/identify", "/embed"):
            r = client.post(route, files=files([group], "image"))
            assert r.status_code == 200, r.text
            found.append(r.json()["faces_found"])
            assert len(r.json()["faces"]) == 1, (route, r.json())
        assert found[0] == found[1] >= 2
        body = client.post("/identify", files=files([group], "image")).json()
        assert [s["count"] for s in body["skipped"]] == [found[0] - 1]
        assert "FACEREC_MAX_FACES" in body["skipped"][0]["reason"]


def test_enrolment_image_cap_is_a_named_422_that_stores_nothing(tmp_path: Path, known: Path):
    photo = known / "train" / "obama" / "obama2.jpg"
    with make_client(tmp_path / "state", max_images_per_enroll=2) as client:
        r = client.post("/enroll", data={"name": "obama"}, files=files([photo] * 3))
        assert r.status_code == 422 and "FACEREC_MAX_IMAGES_PER_ENROLL" in r.json()["error"]["message"], r.text
        assert client.get("/identities").json() == []
        assert client.post("/enroll", data={"name": "obama"}, files=files([photo] * 2)).status_code == 201


def test_identities_page_by_offset_and_limit_in_id_order(tmp_path: Path, known: Path):
    photo = known / "train" / "obama" / "obama2.jpg"
    with make_client(tmp_path / "state") as client:
        for name in ("a", "b", "c"):
            assert client.post("/enroll", data={"name": name}, files=files([photo])).status_code == 201
        everyone = client.get("/identities").json()
        assert [i["name"] for i in everyone] == ["a", "b", "c"]
        page = client.get("/identities", params={"offset": 1, "limit": 1}).json()
        assert [i["name"] for i in page] == ["b"] and page[0]["face_count"] == 1
        assert client.get("/identities", params={"offset": 3}).json() == []
        assert client.get("/identities", params={"limit": 0}).status_code == 422


def test_same_name_enrolled_at_once_makes_one_identity_and_a_409(tmp_path: Path, known: Path):
    photos = [known / "train" / "obama" / "obama2.jpg", known / "train" / "biden" / "biden.jpg"]
    with make_client(tmp_path / "state") as client:
        barrier, answers = threading.Barrier(2), []

        def enrol(photo: Path) -> None:
            barrier.wait()
            answers.append(client.post("/enroll", data={"name": "same"}, files=files([photo])))

        threads = [threading.Thread(target=enrol, args=(p,)) for p in photos]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
        loser = next(r for r in answers if r.status_code == 409)
        assert loser.json()["error"]["code"] == "identity_exists"
        assert [(i["name"], i["face_count"]) for i in client.get("/identities").json()] == [("same", 1)]
        assert client.get("/health").json()["faces_indexed"] == 1


def test_migrations_build_exactly_the_orm_schema(tmp_path: Path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.db.models import Base
    from app.db.session import make_engine, upgrade_database

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade_database(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff
    engine.dispose()


def test_search_ids_resolve_to_identity_name_and_vector_and_deleted_faces_drop_out(tmp_path: Path):
    import numpy as np

    from app.db import crud
    from app.db.session import make_engine, make_session_factory, upgrade_database

    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    upgrade_database(engine)
    sessions = make_session_factory(engine)
    vectors = np.eye(3, 4, dtype=np.float32)
    with sessions() as session:
        ada, bob = (crud.create_identity(session=session, name=n) for n in ("ada", "bob"))
        ids = [
            crud.add_face(
                session=session,
                identity=who,
                embedding=v,
                model_version="m",
                box=[0, 0, 1, 1],
                det_score=1.0,
                source="t",
            ).id
            for who, v in zip((ada, ada, bob), vectors)
        ]
        session.commit()
        bob_id = bob.id
        crud.delete_identity(session=session, identity=bob)
        session.commit()
    with sessions() as session:
        found = crud.faces_found(session=session, face_ids=[*ids, 999], dim=4)
        plain = crud.faces_found(session=session, face_ids=ids)
        assert crud.faces_found(session=session, face_ids=[]) == {}
    assert sorted(found) == ids[:2]  # bob's face went with him; 999 never existed
    assert bob_id not in {identity for identity, _, _ in found.values()}
    for face_id, v in zip(ids[:2], vectors[:2]):
        identity, name, stored = found[face_id]
        assert name == "ada" and np.array_equal(stored, v)
        assert plain[face_id] == (identity, "ada", None)
    engine.dispose()


def test_importing_the_service_leaves_pytorch_and_alembic_to_start_up():
    """They take most of a start's imports (~2 s): ``build_service`` imports them only when it needs them
    (to export a network or run it with PyTorch; to migrate an old database), while the saved index is
    read (app.main), so nothing imported with the app may pull them in."""
    code = "import sys, app.main; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'alembic'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


#: Builds the service in a fresh interpreter and says whether PyTorch was imported.
START_AND_SAY_IF_TORCH = (
    "import sys; from app.config import Settings; from app.main import build_service; "
    "service, _ = build_service(Settings()); service.close(); print('torch' in sys.modules)"
)


def start_on_cpu(state: Path, **env: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "FACEREC_STATE_DIR": str(state),
        "FACEREC_INSECURE_DEV_MODE": "1",
        "FACEREC_DEVICE": "cpu",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", START_AND_SAY_IF_TORCH], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )


def test_a_cpu_service_on_cached_networks_starts_without_pytorch(tmp_path: Path):
    """PyTorch exports the networks for ONNX Runtime the first time; once they are cached, a start on
    a CPU (``auto`` with no GPU driver here, or ``cpu``) neither imports it nor builds a module."""
    runs = [start_on_cpu(tmp_path) for _ in range(2)]  # the first may export (the test cache may be cold)
    assert runs[1].stdout.strip() == "False", runs[1].stdout + runs[1].stderr[-2000:]


def test_a_cache_filled_by_the_export_command_spares_even_the_first_start_pytorch(tmp_path: Path):
    from models import runtime

    runtime.main(["--cache", str(tmp_path / "onnx")])  # as the Docker image is built
    first = start_on_cpu(tmp_path / "state", FACEREC_ONNX_CACHE_DIR=str(tmp_path / "onnx"))
    assert first.stdout.strip() == "False", first.stdout + first.stderr[-2000:]


def test_auto_picks_the_cpu_without_pytorch_where_no_gpu_driver_is_installed(tmp_path: Path):
    driver = tmp_path / "nvidiactl"
    code = (
        "import sys, app.main as m; m.GPU_DEVICE_FILES = (sys.argv[1],); "
        "print(m.pick_device('auto'), m.pick_device('cpu'), 'torch' in sys.modules)"
    )
    absent = subprocess.run([sys.executable, "-c", code, str(driver)], capture_output=True, text=True, cwd=ROOT)
    assert absent.stdout.split() == ["cpu", "cpu", "False"], absent.stderr[-2000:]
    driver.touch()  # a driver's file: PyTorch is asked whether it sees a GPU
    present = subprocess.run([sys.executable, "-c", code, str(driver)], capture_output=True, text=True, cwd=ROOT)
    import torch

    gpu = "cuda" if torch.cuda.is_available() else "cpu"
    assert present.stdout.split() == [gpu, "cpu", "True"], present.stderr[-2000:]


def test_schema_head_names_the_newest_migration():
    from alembic.script import ScriptDirectory

    from app.db.session import SCHEMA_HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [SCHEMA_HEAD]


def test_a_database_at_the_newest_migration_opens_without_alembic(tmp_path: Path):
    code = (
        "import sys; from app.db.session import make_engine, upgrade_database; "
        f"upgrade_database(make_engine('sqlite:///{tmp_path / 'f.db'}')); print('alembic' in sys.modules)"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
        for _ in range(2)
    ]
    assert [r.stdout.strip() for r in runs] == ["True", "False"]  # created by Alembic, then only checked
