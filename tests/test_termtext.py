"""kanban.termtext: agent text made safe for a terminal, and the views the CLI renders."""

from __future__ import annotations

import dataclasses

import pytest

from kanban import termtext, views
from kanban.cli import render
from kanban.states import CardStatus


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        ("a\x1b[31mred\x1b[0m b", "ared b"),
        ("\x1b]0;window title\x07after", "after"),
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x9b2J eight-bit CSI", " eight-bit CSI"),
        ("\x1bP+q544e\x1b\\dcs", "dcs"),
        ("over\rwrite", "over\ufffdwrite"),
        ("bell\x07 backspace\x08", "bell\ufffd backspace\ufffd"),
        ("keeps\ttabs\nand lines", "keeps\ttabs\nand lines"),
        ("trailing escape \x1b", "trailing escape "),
        ("ünïcödé ✓", "ünïcödé ✓"),
    ],
)
def test_clean(raw: str, shown: str) -> None:
    assert termtext.clean(raw) == shown


def _card(**fields: object) -> views.CardView:
    base = views.CardView(
        id=1, title="t", status=CardStatus.BLOCKED, profile="demo", priority=0, parents=()
    )
    return dataclasses.replace(base, **fields)


def test_clean_view_cleans_every_string_and_keeps_enums() -> None:
    card = _card(title="\x1b[2Jtitle", reason="why\x1b]0;x\x07", paths=("a\x1b[1m",))
    clean = termtext.clean_view(card)
    assert (clean.title, clean.reason, clean.paths) == ("title", "why", ("a",))
    assert clean.status is CardStatus.BLOCKED
    assert card.title == "\x1b[2Jtitle", "the view itself is unchanged (JSON keeps it)"


def test_a_card_line_prints_no_agent_escape() -> None:
    line = render.card_line(_card(title="\x1b]0;owned\x07\x9b31m title"))
    assert "owned" not in line and "\x9b" not in line and "title" in line
