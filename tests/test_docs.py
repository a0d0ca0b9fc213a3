"""The README stays true to the code: every setting the service reads is in its settings table."""

from __future__ import annotations

import re
from pathlib import Path

from app.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


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
