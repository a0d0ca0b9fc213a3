"""API keys from the command line, on the service's database (``FACEREC_DATABASE_URL``, default the
SQLite file in ``FACEREC_STATE_DIR``):

    python -m app.keys create --name ci --role admin     # prints the key once; store it safely
    python -m app.keys list
    python -m app.keys revoke 3

A running service sees new and revoked keys at once (keys are checked against the database per request).
"""

from __future__ import annotations

import argparse
import logging
import sys

from app.config import Settings
from app.db.session import make_engine, make_session_factory, upgrade_database
from app.services.auth import ROLES, KeyStore
from app.services.errors import ServiceError

log = logging.getLogger("app.keys")


def key_store(settings: Settings) -> KeyStore:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url, settings.database_timeout_s)
    upgrade_database(engine)
    return KeyStore(make_session_factory(engine), admin_key=None)


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.keys", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key and print it (it is shown only this once)")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--role", choices=sorted(ROLES), default="read")
    sub.add_parser("list", help="every key: id, name, role, prefix, created, revoked")
    revoke = sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)
    args = parser.parse_args(argv)
    store = key_store(settings or Settings())
    try:
        if args.command == "create":
            record, key = store.create(name=args.name, role=args.role)
            sys.stdout.write(f"{key}\n")
            sys.stderr.write(
                f"created key {record.id} ({record.role}, {record.name!r}); it is not stored and "
                "cannot be shown again\n"
            )
        elif args.command == "list":
            for k in store.list():
                revoked = k.revoked_at.isoformat() if k.revoked_at else "-"
                sys.stdout.write(
                    f"{k.id}\t{k.name}\t{k.role}\t{k.prefix}…\t{k.created_at.isoformat()}\trevoked: {revoked}\n"
                )
        else:
            record = store.revoke(args.id)
            if record is None:
                sys.stderr.write(f"no key with id {args.id}; see `python -m app.keys list`\n")
                return 1
            sys.stderr.write(f"key {record.id} ({record.name!r}) is revoked\n")
    except ServiceError as exc:
        sys.stderr.write(f"{exc.message}\n")
        return 2
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
