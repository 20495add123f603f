"""How a run ended, decided from what the agent did and said. Pure: no I/O, no clock.

The supervisor gathers the facts (exit code, the output reader's report, the agent's own
lines) and applies the verdict. Failure classes, in order:

1. killed by a signal nobody sent on purpose: `crashed`;
2. an authentication or configuration error (the reader's structured error, or a line
   matching the profile's `auth_patterns`): `blocked` at once with the agent's own message;
   retrying cannot log in, it only burns quota or loops;
3. a quota or rate limit (structured, a `rate_limit_patterns` line, or a
   `rate_limit_exit_codes` code): requeued after the cooldown without spending an attempt;
4. anything else non-zero, or an agent that says its run failed: a failed attempt.

Exit code 0 from an agent that does not say it failed is `done`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterable, Sequence

from kanban import clock, outputs, processes, profiles
from kanban.states import RunOutcome
from kanban.views import usd

MAX_MESSAGE = 500


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    outcome: RunOutcome
    error: str | None = None
    summary: str | None = None
    retry_after: float | None = None  # seconds; a rate limit's cooldown
    spends_attempt: bool | None = None  # None: as the outcome says; True: a blocked run that
    # failed (cannot log in, over its cap), unlike an agent that asked a person


def first_match(patterns: Sequence[str], lines: Iterable[str]) -> str | None:
    """The first line that matches any pattern (case-insensitive), stripped and clipped."""
    if not patterns:
        return None
    compiled = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    for line in lines:
        if compiled.search(line):
            return _clip(line)
    return None


def is_noise(profile: profiles.Profile, line: str) -> bool:
    return first_match(profile.noise_patterns, [line]) is not None


def _clip(text: str) -> str:
    """One line of at most MAX_MESSAGE characters; a JSON event becomes its message."""
    if text.lstrip().startswith("{"):
        with contextlib.suppress(ValueError, AttributeError):
            data = json.loads(text)
            text = str(data.get("message") or data.get("result") or text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def on_exit(
    profile: profiles.Profile,
    *,
    returncode: int,
    report: outputs.Report,
    messages: Sequence[str],
    now: float,
    auth_line: str | None = None,
) -> Verdict:
    """The outcome of a run whose agent exited by itself with `returncode`.

    `messages` are the agent's own lines (`Reader.messages()`); `auth_line` is a line that
    matched `auth_patterns` while it ran (it decides even after exit code 0: aider, for one,
    exits 0 after its model call was refused); `now` is epoch seconds, for an agent that says
    when its rate limit resets."""
    if auth_line is not None:
        return blocked_auth(profile, auth_line)
    if returncode == 0 and not report.is_error:
        return Verdict(RunOutcome.DONE, summary=report.summary)
    exited = processes.exit_description(returncode)
    if returncode < 0:
        return Verdict(RunOutcome.CRASHED, error=f"agent {exited}")
    auth = first_match(profile.auth_patterns, messages)
    if report.error_kind == "auth" or auth is not None:
        said = report.error if report.error_kind == "auth" else auth
        return blocked_auth(profile, said or report.error or exited)
    limited = first_match(profile.rate_limit_patterns, messages)
    if (
        report.error_kind == "rate_limit"
        or limited is not None
        or returncode in profile.rate_limit_exit_codes
    ):
        said = report.error if report.error_kind == "rate_limit" else limited
        wait = profile.rate_limit_cooldown
        if report.retry_at is not None and report.retry_at > now:
            wait = report.retry_at - now
        return Verdict(
            RunOutcome.RATE_LIMITED,
            error=f"rate limited ({exited})" + (f": {_clip(said)}" if said else ""),
            retry_after=wait,
        )
    said = report.error or (messages[-1] if messages else None)
    return Verdict(
        RunOutcome.FAILED, error=f"agent {exited}" + (f": {_clip(said)}" if said else "")
    )


def blocked_auth(profile: profiles.Profile, said: str) -> Verdict:
    """An agent that cannot log in or is not configured: a person must fix it first."""
    return Verdict(
        RunOutcome.BLOCKED,
        error=f"{profile.name} cannot work: {_clip(said)} (log in or configure the agent, "
        "then `kanban unblock`)",
        spends_attempt=True,
    )


def stopped(why: str, detail: str | None, *, profile: profiles.Profile, timeout: float) -> Verdict:
    """The outcome of an agent the supervisor stops while it runs (kanban.watching.Ended)."""
    if why == "stopping":
        # Its host is shutting down (`kanban dispatch --handoff`) or a person stopped it:
        # not the card's fault, so no attempt is spent and any host may take it at once.
        return Verdict(
            RunOutcome.CRASHED,
            error="handed back: its supervisor was stopped (SIGTERM)",
            spends_attempt=False,
            retry_after=0.0,
        )
    if why == "timeout":
        return Verdict(RunOutcome.TIMED_OUT, error=f"timed out after {clock.human(timeout)}")
    if why == "stalled":
        return stalled(profile.idle_timeout or 0.0, last_noise=detail)
    if why == "auth":
        return blocked_auth(profile, detail or "authentication failed")
    if why == "cost_cap":
        return Verdict(RunOutcome.BLOCKED, error=detail or "cost cap reached", spends_attempt=True)
    raise ValueError(f"not a reason to stop an agent: {why!r}")


def stalled(idle: float, *, last_noise: str | None) -> Verdict:
    """No output but noise for `idle` seconds."""
    error = f"stalled: no output for {clock.human(idle)}"
    if last_noise:
        error += f" but lines like {_clip(last_noise)!r}"
    return Verdict(RunOutcome.STALLED, error=error)


# ----------------------------------------------------------------------------- cost


def run_cost(
    profile: profiles.Profile, report: outputs.Report, *, model: str | None = None
) -> float | None:
    """The run's cost: what the agent reported, else its tokens at the prices of its model
    (the profile's `model_prices`), else at the profile's `token_prices`."""
    if report.cost_usd is not None:
        return report.cost_usd
    prices = profile.price(model)
    if prices is None or (report.tokens_in is None and report.tokens_out is None):
        return None
    price_in, price_out = prices
    return ((report.tokens_in or 0) * price_in + (report.tokens_out or 0) * price_out) / 1e6


@dataclasses.dataclass(frozen=True, slots=True)
class Cap:
    """A cost cap that applies to a run: `spent` is what the capped set of runs cost before
    this one started."""

    label: str  # "card 12's cap", "goal 3's budget"
    limit: float
    spent: float = 0.0
    hint: str = ""  # what a person does about it


def cap_reached(caps: Sequence[Cap], cost: float | None, *, when: str = "") -> str | None:
    """The error that stops a run whose `cost` (so far) reaches a cap, or None. `when` says
    more about the moment ("before this run started")."""
    for cap in caps:
        total = cap.spent + (cost or 0.0)
        if total >= cap.limit:
            hint = f"; {cap.hint}" if cap.hint else ""
            when = f" {when}" if when else ""
            return f"cost cap reached{when}: {usd(total)} of {usd(cap.limit)} ({cap.label}){hint}"
    return None


def usage_text(report: outputs.Report, cost: float | None) -> str:
    tokens = (
        f"{report.tokens_in or 0:,} tokens in, {report.tokens_out or 0:,} out"
        if report.tokens_in is not None or report.tokens_out is not None
        else "tokens not reported"
    )
    return f"{tokens}, cost {usd(cost) if cost is not None else 'not reported'}"
