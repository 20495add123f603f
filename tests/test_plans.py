"""Plans and verdicts are checked whole before anything is made: pure functions, no board."""

from __future__ import annotations

import json

import pytest

from kanban import errors, plans

KNOWN = ["demo", "claude-code"]


def _plan(*cards: dict[str, object]) -> str:
    return json.dumps({"cards": list(cards)})


def test_a_good_plan_comes_back_parents_first() -> None:
    plan = plans.parse_plan(
        _plan(
            {"key": "c", "title": "Check", "profile": "demo", "after": ["a", "b"]},
            {"key": "b", "title": "Build", "profile": "demo", "after": ["a"], "paths": ["src/**"]},
            {"key": "a", "title": "Design", "profile": "claude-code", "body": "details"},
        ),
        known_profiles=KNOWN,
    )
    assert [c.key for c in plan.cards] == ["a", "b", "c"]
    assert plan.cards[1].paths == ("src/**",)
    assert plan.cards[0].body == "details"
    assert plans.check_plan(plan.to_json(), known_profiles=KNOWN) == plan


def test_a_bare_list_of_cards_is_a_plan_too() -> None:
    plan = plans.parse_plan('[{"key": "a", "title": "A", "profile": "demo"}]', known_profiles=KNOWN)
    assert [c.title for c in plan.cards] == ["A"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "the plan is not valid JSON: Expecting property name"),
        ("", "the plan is empty"),
        ('{"cards": []}', "the plan has no cards"),
        ('{"steps": []}', "unknown key(s) steps"),
        ('"cards"', 'the plan must be {"cards": [...]}'),
        (
            _plan(
                {"key": "a", "title": "A", "profile": "demo", "after": ["b"]},
                {"key": "b", "title": "B", "profile": "demo", "after": ["c"]},
                {"key": "c", "title": "C", "profile": "demo", "after": ["a"]},
            ),
            "the plan's `after` links form a cycle: a after b after c after a",
        ),
        (
            _plan({"key": "a", "title": "A", "profile": "gpt-9"}),
            "card 'a' names unknown profile 'gpt-9'; known profiles: claude-code, demo",
        ),
        (_plan({"key": "a", "title": "  ", "profile": "demo"}), "card 'a' has an empty title"),
        (_plan({"key": "a", "title": "A\nB", "profile": "demo"}), "the title must be one line"),
        (_plan({"key": "a", "title": "A"}), "card 'a' has no profile"),
        (_plan({"title": "A", "profile": "demo"}), "card 1 needs a key"),
        (
            _plan(
                {"key": "a", "title": "A", "profile": "demo"},
                {"key": "a", "title": "B", "profile": "demo"},
            ),
            "two cards with key 'a'",
        ),
        (
            _plan({"key": "a", "title": "A", "profile": "demo", "after": ["zz"]}),
            "card 'a' comes after 'zz', which is not a key of this plan",
        ),
        (_plan({"key": "a", "title": "A", "profile": "demo", "after": ["a"]}), "lists itself"),
        (
            _plan({"key": "a", "title": "A", "profile": "demo", "paths": ["../etc/**"]}),
            "must be a glob relative to the repository",
        ),
        (
            _plan({"key": "a", "title": "A", "profile": "demo", "aftr": ["b"]}),
            "unknown key(s) aftr",
        ),
    ],
    ids=[
        "malformed JSON",
        "empty",
        "no cards",
        "wrong top key",
        "not an object",
        "cycle",
        "unknown profile",
        "empty title",
        "two-line title",
        "no profile",
        "no key",
        "duplicate key",
        "unknown after",
        "after itself",
        "path outside",
        "typo in a key",
    ],
)
def test_a_bad_plan_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(errors.PlanError) as caught:
        plans.parse_plan(text, known_profiles=KNOWN)
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_verdicts() -> None:
    assert plans.parse_verdict('{"done": true}') == plans.Verdict(done=True, reason="")
    assert plans.parse_verdict('{"done": false, "reason": " no tests "}').reason == "no tests"
    for bad, message in [
        ('{"done": "yes"}', "the verdict must be"),
        ('{"done": false}', "a verdict of not done needs a reason"),
        ("[true]", "the verdict must be"),
        ("nope", "not valid JSON"),
    ]:
        with pytest.raises(errors.PlanError, match=message):
            plans.parse_verdict(bad)
