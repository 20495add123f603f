"""Failure classes: how an exit code, the reader's report and the agent's own lines become a
run outcome; cost caps; the shipped profiles' patterns against recorded real output."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanban import outcomes, outputs, profiles
from kanban.states import RunOutcome

DATA = Path(__file__).parent / "data"
PROFILE = profiles.Profile(
    name="agent",
    command=("agent",),
    auth_patterns=("^not logged in", "invalid api key"),
    rate_limit_patterns=("rate limit",),
    rate_limit_cooldown=120.0,
    rate_limit_exit_codes=(75,),
)
NO_REPORT = outputs.Report()


def judge(
    code: int,
    *lines: str,
    report: outputs.Report = NO_REPORT,
    auth_line: str | None = None,
    profile: profiles.Profile = PROFILE,
) -> outcomes.Verdict:
    return outcomes.on_exit(
        profile,
        returncode=code,
        report=report,
        messages=list(lines),
        now=1000.0,
        auth_line=auth_line,
    )


def test_exit_0_is_done_with_the_readers_summary() -> None:
    verdict = judge(0, "Rate limit tests added", report=outputs.Report(summary="all good"))
    assert verdict == outcomes.Verdict(RunOutcome.DONE, summary="all good")


def test_an_auth_line_blocks_at_once_with_the_agents_words_and_spends_the_attempt() -> None:
    verdict = judge(1, "starting", "Not logged in · Please run /login", "bye")
    assert verdict.outcome is RunOutcome.BLOCKED
    assert verdict.spends_attempt is True
    assert verdict.error is not None
    assert "Not logged in · Please run /login" in verdict.error
    assert "kanban unblock" in verdict.error


def test_an_auth_line_seen_while_running_decides_even_after_exit_0() -> None:
    verdict = judge(0, auth_line="No LLM model was specified and no API keys were provided.")
    assert verdict.outcome is RunOutcome.BLOCKED


def test_a_structured_auth_error_needs_no_pattern() -> None:
    report = outputs.Report(is_error=True, error="OAuth token revoked", error_kind="auth")
    verdict = judge(1, report=report, profile=profiles.Profile(name="x", command=("x",)))
    assert verdict.outcome is RunOutcome.BLOCKED
    assert verdict.error is not None and "OAuth token revoked" in verdict.error


def test_a_rate_limit_line_requeues_after_the_cooldown() -> None:
    verdict = judge(1, "Error: rate limit exceeded, try later")
    assert verdict.outcome is RunOutcome.RATE_LIMITED
    assert verdict.retry_after == 120.0
    assert verdict.error is not None and "rate limit exceeded" in verdict.error


def test_a_rate_limit_exit_code_requeues_too() -> None:
    assert judge(75).outcome is RunOutcome.RATE_LIMITED


def test_a_rate_limit_that_says_when_it_resets_waits_until_then() -> None:
    report = outputs.Report(
        is_error=True, error="limit|1600", error_kind="rate_limit", retry_at=1600.0
    )
    verdict = judge(1, report=report)
    assert verdict.outcome is RunOutcome.RATE_LIMITED
    assert verdict.retry_after == 600.0


def test_auth_wins_over_rate_limit() -> None:
    assert judge(1, "rate limit", "invalid API key").outcome is RunOutcome.BLOCKED


def test_a_signal_is_a_crash_and_anything_else_a_failed_attempt() -> None:
    assert judge(-9, "Not logged in").outcome is RunOutcome.CRASHED
    verdict = judge(2, "compiling", "error: tests failed")
    assert verdict.outcome is RunOutcome.FAILED
    assert verdict.spends_attempt is None  # as the outcome says: failed spends one
    assert verdict.error == "agent exit code 2: error: tests failed"


def test_an_agent_that_says_it_failed_is_failed_even_with_exit_0() -> None:
    report = outputs.Report(is_error=True, error="error_max_turns")
    assert judge(0, report=report).outcome is RunOutcome.FAILED


def test_patterns_are_case_insensitive_regular_expressions() -> None:
    assert outcomes.first_match(["^not LOGGED"], ["x", "Not logged in"]) == "Not logged in"
    assert outcomes.first_match([], ["anything"]) is None
    assert outcomes.first_match(["^in"], ["not logged in"]) is None  # anchored


def test_a_stalled_run_names_the_noise_it_kept_printing() -> None:
    noise = '{"type":"error","message":"Reconnecting... waiting for network"}'
    verdict = outcomes.stalled(180.0, last_noise=noise)
    assert verdict.outcome is RunOutcome.STALLED
    assert verdict.error == (
        "stalled: no output for 3m00s but lines like 'Reconnecting... waiting for network'"
    )


def test_a_cap_is_reached_by_what_was_spent_before_plus_this_run() -> None:
    cap = outcomes.Cap("card 3's cap", 1.0, spent=0.75, hint="raise it")
    assert outcomes.cap_reached([cap], 0.2) is None
    assert outcomes.cap_reached([cap], 0.25) == (
        "cost cap reached: $1.00 of $1.00 (card 3's cap); raise it"
    )
    assert outcomes.cap_reached([], 100.0) is None


def test_cost_is_the_agents_own_else_tokens_at_the_profiles_prices() -> None:
    priced = profiles.Profile(name="p", command=("p",), token_prices=(1.25, 10.0))
    tokens = outputs.Report(tokens_in=2_000_000, tokens_out=100_000)
    assert outcomes.run_cost(priced, tokens) == pytest.approx(3.5)
    assert outcomes.run_cost(PROFILE, tokens) is None  # no prices, no cost
    reported = outputs.Report(tokens_in=2_000_000, cost_usd=0.5)
    assert outcomes.run_cost(priced, reported) == 0.5


@pytest.mark.parametrize(
    ("profile", "output", "recorded", "expected"),
    [
        (
            "claude-code",
            "claude-stream-json",
            "claude-stream-json-not-logged-in.jsonl",
            "Not logged in",
        ),
        ("hermes", "text", "hermes-not-configured.log", "no API keys or providers found"),
        ("aider", "aider", "aider-no-keys.log", "No LLM model was specified"),
    ],
)
def test_the_shipped_profiles_block_their_agents_recorded_auth_failures(
    profile: str, output: str, recorded: str, expected: str
) -> None:
    shipped = profiles.load(profile, repo=None)
    assert shipped.output == output
    reader = outputs.reader(output)
    said = [m for line in (DATA / recorded).read_text().splitlines() for m in reader.feed(line)]
    live = outcomes.first_match(shipped.auth_patterns, said)
    verdict = judge(1, *reader.messages(), report=reader.report(), auth_line=live, profile=shipped)
    assert verdict.outcome is RunOutcome.BLOCKED
    assert verdict.error is not None and expected in verdict.error


def test_codex_reconnect_lines_are_noise_for_the_shipped_profile() -> None:
    codex = profiles.load("codex", repo=None)
    recorded = (DATA / "codex-json-no-network.log").read_text().splitlines()
    noise = [line for line in recorded if outcomes.is_noise(codex, line)]
    progress = [line for line in recorded if not outcomes.is_noise(codex, line)]
    assert any("waiting for network" in line for line in noise)
    assert not any("Reconnecting" in line for line in progress)
    assert any("turn.started" in line for line in progress)
