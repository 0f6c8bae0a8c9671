"""The README stays true to the code: settings, events, end reasons, snippets and examples."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pydantic import AliasChoices

from tests.support.api import API_KEY, API_SECRET
from tests.support.stack import Stack
from worker.settings import Settings
from worker.webhooks.events import END_REASONS, EVENT_MODELS

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


def _block(section: str, language: str) -> str:
    """The first ```language block after the heading `section`."""
    text = README[README.index(section) :]
    start = text.index(f"```{language}\n") + len(language) + 4
    return text[start : text.index("```", start)]


def test_the_readme_shows_the_tested_verification_snippets_verbatim() -> None:
    root = Path(__file__).resolve().parent.parent
    section = "### Verifying webhooks in PHP and Node"
    assert _block(section, "php") == (root / "docs/snippets/verify.php").read_text()
    assert _block(section, "js") == (root / "docs/snippets/verify.js").read_text()


def test_the_webhook_reference_lists_every_event_and_every_end_reason() -> None:
    table = README[README.index("### Webhook reference") :]
    missing = [e for e, s in EVENT_MODELS.items() if f"| `{e}` | {s.fires} |" not in table]
    assert missing == []
    assert [c for c, text in END_REASONS.items() if f"| `{c}` | {text} |" not in table] == []


async def test_the_minimal_create_example_creates_a_room(stack: Stack) -> None:
    script = _block("## Creating a room", "sh").splitlines()
    assert script[0].startswith("API=")  # the line naming the dev address and credentials
    script[0] = f"API={stack.url} KEY={API_KEY} SECRET={API_SECRET}"

    # Run beside the stack (it serves from this event loop), not blocking it.
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", "\n".join(script), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)

    answer = json.loads(out)
    assert answer["status"] is True and answer["room_info"]["name"] == "room01", answer
