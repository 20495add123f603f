"""The texts a goal's planner and judge cards carry (pure: no database, no files).

The profile lines a planner sees are read from disk by the caller before any transaction
(`kanban.goals.catalog`) and passed in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from kanban import plans, views

if TYPE_CHECKING:
    from kanban.profiles import Profile


def profile_lines(known: Iterable[Profile]) -> tuple[str, ...]:
    """One line per profile a planner may give a card: its name and description."""
    return tuple(
        f"- `{p.name}`: {p.description or '(no description)'}"
        + (" (takes a `model`)" if p.model_args else "")
        for p in sorted(known, key=lambda p: p.name)
    )


def title(prefix: str, objective: str) -> str:
    first = next((ln.strip() for ln in objective.splitlines() if ln.strip()), objective)
    text = f"{prefix}: {first}"
    return text if len(text) <= 200 else text[:199] + "…"


def card_lines(cards: Collection[views.CardView]) -> list[str]:
    lines = []
    for card in cards:
        line = f"- Card {card.id} [{card.status}] {card.title}"
        if card.branch:
            line += f" (branch `{card.branch}`)"
        lines.append(line)
        if card.summary:
            lines += ["  " + ln for ln in card.summary.strip().splitlines()]
    return lines


def planner_body(
    goal: views.GoalView,
    turn: int,
    feedback: str | None,
    cards: Collection[views.CardView],
    profile_lines: Collection[str],
) -> str:
    parts = [
        f"You are planning goal {goal.id}, turn {turn} of at most {goal.max_turns}. Do not do "
        "the work yourself: break the objective into cards that other agents will work, and "
        "write the plan as JSON to the file named by $KANBAN_PLAN_FILE.",
        "## Objective\n\n" + goal.objective,
    ]
    if feedback:
        parts.append(f"## Why the last turn was judged not done\n\n{feedback}")
    if cards:
        parts.append("## Cards of this goal so far\n\n" + "\n".join(card_lines(cards)))
    parts.append("## Profiles you can give a card\n\n" + "\n".join(profile_lines or ["- none"]))
    parts.append(
        "## The plan\n\nWrite exactly this shape to $KANBAN_PLAN_FILE:\n\n```json\n"
        + plans.FORMAT
        + "\n```\n\n"
        "- `key`: short and unique within the plan; `after` lists keys of this plan that must "
        "be done first (no cycles).\n"
        "- `title`: one line; `body`: everything the card's agent needs to know.\n"
        "- `profile`: one of the profiles above; `paths`: optional globs of the files it will "
        "touch (cards whose paths overlap never run at once).\n"
        "- `model`: optional, for a profile marked as taking one: the model that card's "
        "agent runs with; `args` and `env`: optional extra options and variables, only those "
        "the profile allows.\n"
        "- Then exit 0 (or run `kanban complete`). A plan that does not validate fails this "
        "attempt with the reason, and nothing of it is created."
    )
    return "\n\n".join(parts)


def judge_body(goal: views.GoalView, cards: Collection[views.CardView]) -> str:
    return "\n\n".join(
        [
            f"You are judging goal {goal.id} after turn {goal.turn} of at most "
            f"{goal.max_turns}. Do not change anything: check whether the objective is met by "
            "the work below (your worktree holds it), and write your verdict as JSON to the "
            "file named by $KANBAN_VERDICT_FILE.",
            "## Objective\n\n" + goal.objective,
            "## The goal's cards\n\n" + "\n".join(card_lines(cards) or ["- none"]),
            "## The verdict\n\nWrite exactly this shape to $KANBAN_VERDICT_FILE, then exit 0:\n\n"
            '```json\n{"done": false, "reason": "what is missing or wrong, for the next plan"}'
            "\n```\n\n"
            '`"done": true` ends the goal. Not done starts another planning turn that reads '
            "your reason, until the goal's turns are spent.",
        ]
    )
