"""The README stays true to the code: every setting the service reads is in its settings table, the
set-up commands come first, and the compose file holds the set-ups the README describes."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_every_setting_is_documented_in_the_readme_table():
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `FACEREC_")]
    documented = {name for row in rows for name in re.findall(r"`(FACEREC_[A-Z0-9_]+)`", row.split("|")[1])}
    settings = {f"FACEREC_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from the README's table"
    assert documented - settings <= {"FACEREC_DATA"}, "the README's table names settings that do not exist"


def test_readme_starts_with_the_two_setup_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    assert "uvicorn app.main:app" in blocks[0] and "pip install -e ." in blocks[0]
    assert "pytest" in blocks[1] and "pip install -e '.[dev]'" in blocks[1]


def test_the_compose_file_runs_one_service_by_default_and_a_scaled_set_up_on_a_profile():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert [name for name, svc in services.items() if not svc.get("profiles")] == ["facerec"]
    scaled = {name for name, svc in services.items() if "scale" in svc.get("profiles", [])}
    assert scaled == {"postgres", "replica", "lb"}
    assert "facerec-postgres:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    replica = services["replica"]
    assert replica["environment"]["FACEREC_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "FACEREC_ADMIN_KEY" in replica["environment"] and "healthcheck" in replica
    assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "proxy_pass http://facerec" in compose["configs"]["nginx"]["content"]
