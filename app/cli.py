"""``facerec``: the service from a terminal.

Talks to a running service by URL and key (``--url``/``--key``, or ``FACEREC_URL``/``FACEREC_API_KEY``):

    facerec health
    facerec enroll people/ [--jobs 2]   # one folder per person; safe to re-run
    facerec identify group.jpg [--json] [--fpr 1e-2]
    facerec verify a.jpg b.jpg          # or: facerec verify a.jpg --identity 3
    facerec gallery list [--search NAME] | show ID | delete ID | outdated

and runs the local admin commands on ``FACEREC_STATE_DIR`` (no service needed):

    facerec keys create --name kiosk --role read | list | revoke ID
    facerec serve [--host 0.0.0.0] [--port 8000]
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from app.client import ApiError, FacerecClient

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2))


def fail(error: ApiError) -> None:
    click.secho(f"error: {error.message} [{error.code}]", fg="red", err=True)
    sys.exit(1 if error.status == 0 or error.status >= 500 else 2)


HELP = """The face-recognition service from a terminal.

Talks to a running service by URL and key (--url/--key, or FACEREC_URL and FACEREC_API_KEY):

\b
  facerec health
  facerec enroll people/              one folder per person; safe to re-run
  facerec identify group.jpg          --json, --fpr 1e-2, --top-k 3
  facerec verify a.jpg b.jpg          or: facerec verify a.jpg --identity 3
  facerec gallery list|show|delete|outdated

Local admin commands on FACEREC_STATE_DIR (no running service needed):

\b
  facerec keys create --name kiosk --role read | list | revoke ID
  facerec serve --host 0.0.0.0 --port 8000
"""


@click.group(help=HELP)
@click.option("--url", envvar="FACEREC_URL", default="http://localhost:8000", show_default=True, help="the service")
@click.option("--key", envvar="FACEREC_API_KEY", default=None, help="an API key (FACEREC_API_KEY)")
@click.pass_context
def main(ctx: click.Context, url: str, key: str | None) -> None:
    ctx.obj = {"url": url, "key": key}


def client(ctx: click.Context) -> FacerecClient:
    return FacerecClient(ctx.obj["url"], ctx.obj["key"])


@main.command()
@click.pass_context
def health(ctx: click.Context) -> None:
    """Whether the service is up, and what it has loaded."""
    try:
        with client(ctx) as api:
            h = api.health()
    except ApiError as e:
        fail(e)
    click.echo(
        f"{h['status']} — model {h['model_version']} on {h['device']}; {h['identities']} identities, "
        f"{h['faces_indexed']} faces searchable; keys: {h['auth']}"
    )
    if h.get("faces_other_model"):
        click.secho(f"{h['faces_other_model']} faces were made by another model: facerec gallery outdated", fg="yellow")


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--add", is_flag=True, help="add photos to people already enrolled (default: skip them)")
@click.option(
    "--jobs",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="people enrolled at once (each person's photos go one after another)",
)
@click.pass_context
def enroll(ctx: click.Context, folder: Path, add: bool, jobs: int) -> None:
    """Enrol every person in FOLDER (one sub-folder per person, named as the person).

    Each photo is sent on its own, so one bad photo is reported and skipped instead of failing its
    person. People already in the gallery are skipped (safe to re-run), unless --add. --jobs people
    are enrolled at once: one request at a time leaves a two-core service's second core idle while
    each photo travels and is stored (2 jobs enrolled 1.35x as many photos a second as 1)."""
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    if not people:
        raise click.UsageError(f"{folder} has no sub-folders; make one folder per person, named as the person")
    try:
        with client(ctx) as api:
            existing = {i["name"]: i["id"] for i in api.all_identities()}
            plan = [(p.name, photos_in(p)) for p in people]
            outcomes = Counter()
            rejected: list[tuple[str, str]] = []
            with click.progressbar(
                length=sum(len(photos) for _, photos in plan), label="enrolling", show_pos=True, file=sys.stderr
            ) as bar:
                for outcome, where, why in enrol_people(api, plan, existing, add, jobs):
                    outcomes[outcome] += 1
                    if outcome == "rejected":
                        rejected.append((where, why))
                    bar.update(1)
    except ApiError as e:
        fail(e)
    click.echo(
        f"{outcomes['created']} people created, {outcomes['added']} photos added, {outcomes['skipped']} photos of "
        f"people already enrolled skipped, {len(rejected)} photos rejected"
    )
    for where, why in sorted(rejected):
        click.echo(f"  rejected {where}: {why}")


def enrol_people(
    api: FacerecClient, plan: list[tuple[str, list[Path]]], existing: dict[str, int], add: bool, jobs: int
) -> Iterator[tuple[str, str, str]]:
    """Enrol ``plan``'s people ``jobs`` at a time; yields ("created"|"added"|"skipped"|"rejected", photo, why)
    for each photo as it is done. An error that concerns every request (the service unreachable, the
    key refused) stops the others before their next photo and is raised here."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

    def person(name: str, photos: list[Path]) -> None:
        try:
            identity = existing.get(name)
            skip = identity is not None and not add
            for photo in photos:
                where = f"{name}/{photo.name}"
                if skip:
                    events.put(("skipped", where, ""))
                    continue
                if stop.is_set():
                    return
                try:
                    if identity is None:
                        identity = api.enroll([photo], name=name)["identity"]["id"]
                        events.put(("created", where, ""))
                    else:
                        api.enroll([photo], identity_id=identity)
                        events.put(("added", where, ""))
                except ApiError as e:
                    if e.status == 0 or e.status in (401, 403):
                        raise
                    events.put(("rejected", where, f"{e.message} [{e.code}]"))
                except OSError as e:  # the photo could not be read here
                    events.put(("rejected", where, f"cannot read it ({e.strerror or e}) [unreadable]"))
        except BaseException as e:  # noqa: BLE001 -- handed to the caller, which raises it
            stop.set()
            events.put(("error", "", e))

    expected = sum(len(photos) for _, photos in plan)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="enroll") as pool:
        for name, photos in plan:
            pool.submit(person, name, photos)
        try:
            for _ in range(expected):
                outcome, where, why = events.get()
                if outcome == "error":
                    raise why
                yield outcome, where, why
        finally:  # a raised error, or the caller gone: the others stop before their next photo
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)


@main.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--fpr", type=float, default=None, help="operating point (default: the service's, 1e-3)")
@click.option("--top-k", type=int, default=None, help="candidates per face")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON")
@click.pass_context
def identify(ctx: click.Context, photos: tuple[Path, ...], fpr: float | None, top_k: int | None, as_json: bool) -> None:
    """Who is in each photo."""
    results = {}
    try:
        with client(ctx) as api:
            for photo in photos:
                results[str(photo)] = api.identify(photo, fpr=fpr, top_k=top_k)
    except ApiError as e:
        fail(e)
    if as_json:
        echo_json(results)
        return
    click.echo(f"{'photo':30} {'face':>4}  {'box':24} {'match':20} similarity")
    for photo, r in results.items():
        if not r["faces"]:
            click.echo(f"{Path(photo).name:30} {'-':>4}  no face found")
        for n, face in enumerate(r["faces"], 1):
            box = ",".join(str(round(v)) for v in face["box"])
            best = face["candidates"][0] if face["candidates"] else None
            name = face["match"]["name"] if face["match"] else "unknown"
            sim = f"{best['similarity']:.3f}" if best else "-"
            click.echo(f"{Path(photo).name:30} {n:>4}  {box:24} {name:20} {sim}")
        click.echo(f"{'':30} threshold {r['threshold']:.3f} at FPR {r['fpr']:g}")


@main.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("other", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--identity", "identity_id", type=int, default=None, help="compare with an enrolled identity")
@click.option("--fpr", type=float, default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx, photo: Path, other: Path | None, identity_id: int | None, fpr: float | None, as_json: bool) -> None:
    """Are PHOTO and OTHER (or --identity) the same person?"""
    if (other is None) == (identity_id is None):
        raise click.UsageError("give a second photo or --identity ID, not both")
    try:
        with client(ctx) as api:
            r = api.verify(photo, other, identity_id=identity_id, fpr=fpr)
    except ApiError as e:
        fail(e)
    if as_json:
        echo_json(r)
        return
    against = other.name if other else f"{r['identity']['name']} (id {r['identity']['id']})"
    verdict = click.style("same person", fg="green") if r["same"] else click.style("different people", fg="red")
    click.echo(
        f"{photo.name} vs {against}: {verdict} — score {r['score']:.3f}, threshold {r['threshold']:.3f} "
        f"at FPR {r['fpr']:g}"
    )


@main.group()
def gallery() -> None:
    """List, inspect and delete enrolled people."""


@gallery.command("list")
@click.option("--search", default=None, help="only names containing this (case-insensitive)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def gallery_list(ctx: click.Context, search: str | None, as_json: bool) -> None:
    try:
        with client(ctx.parent) as api:
            people = list(api.all_identities(search=search))
    except ApiError as e:
        fail(e)
    if as_json:
        echo_json(people)
        return
    for i in people:
        click.echo(f"{i['id']:>6}  {i['name']:30} {i['face_count']:>3} faces  enrolled {i['created_at'][:19]}")
    click.echo(f"{len(people)} identities")


@gallery.command("show")
@click.argument("identity_id", type=int)
@click.pass_context
def gallery_show(ctx: click.Context, identity_id: int) -> None:
    try:
        with client(ctx.parent) as api:
            echo_json(api.identity(identity_id))
    except ApiError as e:
        fail(e)


@gallery.command("delete")
@click.argument("identity_id", type=int)
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
def gallery_delete(ctx: click.Context, identity_id: int, yes: bool) -> None:
    try:
        with client(ctx.parent) as api:
            person = api.identity(identity_id)
            if not yes:
                click.confirm(
                    f"delete {person['name']!r} (id {identity_id}, {person['face_count']} faces)?", abort=True
                )
            r = api.delete_identity(identity_id)
    except ApiError as e:
        fail(e)
    click.echo(f"deleted {person['name']!r}: {r.get('faces_deleted', person['face_count'])} faces removed")


@gallery.command("outdated")
@click.pass_context
def gallery_outdated(ctx: click.Context) -> None:
    """People with faces made by another model version (re-enrol them)."""
    try:
        with client(ctx.parent) as api:
            rows = api.outdated_identities()
    except ApiError as e:
        fail(e)
    for r in rows:
        click.echo(f"{r['id']:>6}  {r['name']:30} {r['outdated_faces']} outdated, {r['current_faces']} current")
    click.echo(f"{len(rows)} identities need re-enrolment" if rows else "nothing to re-enrol")


@main.group(context_settings={"ignore_unknown_options": True})
def keys() -> None:
    """API keys on the local database (FACEREC_STATE_DIR); a running service sees changes at once."""


@keys.command("create")
@click.option("--name", required=True, help="who or what uses the key")
@click.option("--role", type=click.Choice(["read", "admin"]), default="read", show_default=True)
def keys_create(name: str, role: str) -> None:
    from app import keys as admin

    sys.exit(admin.main(["create", "--name", name, "--role", role]))


@keys.command("list")
def keys_list() -> None:
    from app import keys as admin

    sys.exit(admin.main(["list"]))


@keys.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    from app import keys as admin

    sys.exit(admin.main(["revoke", str(key_id)]))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the service (uvicorn, one worker: one process per state directory)."""
    import uvicorn

    uvicorn.run("app.main:app", host=host, port=port)


if __name__ == "__main__":
    main()
