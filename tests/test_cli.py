"""The facerec command line against a live service (real uvicorn, real photos), as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.testing import ADMIN_KEY, LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    with LiveServer(tmp / "state", tmp / "server.log") as server:
        yield server


def run(live: LiveServer, *args: str, key: str = ADMIN_KEY, input: str | None = None):
    result = CliRunner().invoke(main, list(args), env={"FACEREC_URL": live.url, "FACEREC_API_KEY": key}, input=input)
    return result


def face_counts(live: LiveServer, prefix: str) -> dict[str, int]:
    """Faces per enrolled identity whose name contains ``prefix``, as the CLI lists them."""
    listing = run(live, "gallery", "list", "--search", prefix, "--json")
    return {i["name"]: i["face_count"] for i in json.loads(listing.output)}


def test_a_session_at_the_terminal(live: LiveServer, known: Path, data: Path, tmp_path: Path):
    assert "ok — model" in run(live, "health").output

    people = tmp_path / "people"
    (people / "obama").mkdir(parents=True)
    (people / "biden").mkdir()
    for photo in sorted((known / "train" / "obama").iterdir()):
        shutil.copy(photo, people / "obama")
    shutil.copy(known / "train" / "biden" / "biden.jpg", people / "biden")
    shutil.copy(data / "photos" / "crowds" / "dogs.jpg", people / "biden" / "zz_dogs.jpg")
    n_obama = len(list((people / "obama").iterdir()))

    first = run(live, "enroll", str(people))
    assert first.exit_code == 0, first.output
    assert (
        f"2 people created, {n_obama - 1} photos added, 0 photos of people already enrolled skipped, 1 photos rejected"
        in first.output
    )
    assert "rejected biden/zz_dogs.jpg" in first.output and "[no_face]" in first.output
    again = run(live, "enroll", str(people))  # safe to re-run: nothing is enrolled twice
    assert f"0 people created, 0 photos added, {n_obama + 2} photos of people already enrolled skipped" in again.output

    group = known / "test" / "obama_and_biden.jpg"
    as_json = run(live, "identify", str(group), "--json", "--fpr", "1e-2")
    assert as_json.exit_code == 0, as_json.output
    faces = json.loads(as_json.output)[str(group)]["faces"]
    assert "obama" in {f["match"]["name"] for f in faces if f["match"]}
    table = run(live, "identify", str(group), "--fpr", "1e-2").output
    assert "obama" in table and "threshold" in table

    same = run(
        live,
        "verify",
        str(known / "test" / "obama1.jpg"),
        str(known / "train" / "obama" / "obama2.jpg"),
        "--fpr",
        "1e-2",
    )
    assert "same person" in same.output, same.output
    assert (
        "different people"
        in run(live, "verify", str(known / "test" / "obama1.jpg"), str(known / "train" / "biden" / "biden.jpg")).output
    )

    listing = run(live, "gallery", "list", "--search", "OBA", "--json")
    (obama,) = json.loads(listing.output)
    assert obama["name"] == "obama" and obama["face_count"] == n_obama
    refused = run(live, "gallery", "delete", str(obama["id"]), input="n\n")
    assert refused.exit_code != 0 and "Aborted" in refused.output
    deleted = run(live, "gallery", "delete", str(obama["id"]), "--yes")
    assert "deleted 'obama'" in deleted.output
    assert "1 identities" in run(live, "gallery", "list").output


def test_enrolling_people_at_once_gives_each_person_exactly_their_own_photos(live: LiveServer, known: Path, tmp_path):
    people = tmp_path / "at_once"
    for person in ("kit_harington", "rose_leslie", "alex_lacamoire", "obama"):
        shutil.copytree(known / "train" / person, people / f"jobs-{person}")
    counts = {p.name: len(list(p.iterdir())) for p in people.iterdir()}

    result = run(live, "enroll", str(people), "--jobs", "4")
    assert result.exit_code == 0, result.output
    assert f"4 people created, {sum(counts.values()) - 4} photos added, 0 photos" in result.output
    assert face_counts(live, "jobs-") == counts

    again = run(live, "enroll", str(people), "--jobs", "3", "--add")  # --add: every photo a second time
    assert f"0 people created, {sum(counts.values())} photos added" in again.output
    assert face_counts(live, "jobs-") == {name: 2 * n for name, n in counts.items()}
    assert run(live, "enroll", str(people), "--jobs", "0").exit_code == 2  # a usage error, nothing sent


def test_a_key_that_may_not_enrol_stops_every_job_with_one_error_and_enrols_nobody(
    live: LiveServer, known: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("FACEREC_STATE_DIR", str(live.state_dir))  # the live service's own key table
    created = CliRunner().invoke(main, ["keys", "create", "--name", "reader", "--role", "read"])
    read_key = created.output.splitlines()[0]
    people = tmp_path / "refused"
    for person in ("kit_harington", "rose_leslie", "obama", "biden"):
        shutil.copytree(known / "train" / person, people / f"refused-{person}")

    result = run(live, "enroll", str(people), "--jobs", "3", key=read_key)
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "people created" not in result.output, result.output
    assert "[forbidden]" in result.output, result.output
    assert json.loads(run(live, "gallery", "list", "--search", "refused-", "--json").output) == []


def test_errors_are_one_line_with_the_apis_code(live: LiveServer, known: Path):
    wrong = run(live, "gallery", "list", key="frk_not-a-valid-key-000")
    assert wrong.exit_code == 2 and "[invalid_api_key]" in wrong.output
    missing = run(live, "gallery", "show", "999999")
    assert missing.exit_code == 2 and "[unknown_identity]" in missing.output
    nowhere = CliRunner().invoke(main, ["--url", "http://127.0.0.1:9", "health"])
    assert nowhere.exit_code == 1 and "cannot reach" in nowhere.output
    usage = run(live, "verify", str(known / "test" / "obama1.jpg"))
    assert usage.exit_code == 2 and "second photo or --identity" in usage.output


def test_keys_are_managed_on_the_local_state_dir(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FACEREC_STATE_DIR", str(tmp_path / "state"))
    created = CliRunner().invoke(main, ["keys", "create", "--name", "kiosk", "--role", "read"])
    assert created.exit_code == 0 and created.output.strip().startswith("frk_"), created.output
    listed = CliRunner().invoke(main, ["keys", "list"])
    assert "kiosk\tread" in listed.output and "revoked: -" in listed.output
    key_id = listed.output.split("\t")[0]
    assert CliRunner().invoke(main, ["keys", "revoke", key_id]).exit_code == 0
    assert "revoked: -" not in CliRunner().invoke(main, ["keys", "list"]).output
