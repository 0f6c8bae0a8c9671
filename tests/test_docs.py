"""The README stays true to the code: every setting is in its configuration table."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from worker.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def env_names() -> list[str]:
    names = []
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        names.append(
            str(alias.choices[0])
            if isinstance(alias, AliasChoices)
            else f"ROOMKEEPER_{field.upper()}"
        )
    return names


def test_every_setting_is_documented_in_the_configuration_table() -> None:
    table = README[README.index("## Configuration") :]
    missing = [name for name in env_names() if f"`{name}`" not in table]
    assert missing == []
