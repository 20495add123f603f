"""A deterministic agent for the demo and the tests: real work, no LLM.

It writes `cards/<id>-<slug>.md` (naming the parents' files it found), commits it on the
card's branch and reports with the run's token. Lines in the card body change what it does:

    demo: sleep 1.5          wait first (seconds)
    demo: fail [message]     exit 1 after printing the message
    demo: hang-once          any directive with -once applies to the first attempt only
    demo: exit 75            exit with that code (75: rate limited)
    demo: hang               never finish (ignores nothing; the timeout or a kill ends it)
    demo: ignore-term        ignore SIGTERM (the supervisor must escalate to SIGKILL)
    demo: fork               leave a sleeping grandchild in its process group, then finish
    demo: crash              kill itself with SIGKILL
    demo: block REASON       ask a person (kanban block)
    demo: follow-up TITLE    add a follow-up card after this one
    demo: touch PATH         also write PATH (for path-overlap demos)
    demo: no-report          just exit 0 and let the exit code speak

As a goal's planner ($KANBAN_PLAN_FILE set) it splits the objective deterministically: parts
separated by ';' run side by side and an integration card follows them; a single objective
becomes design -> build and document -> check. Later turns plan one card that addresses the
judge's reason. As a judge ($KANBAN_VERDICT_FILE set) it checks that the file of every done
card of the goal is in its worktree. Lines in the goal's objective steer both:

    demo: plan-malformed     write a plan that is not JSON
    demo: plan-cycle         write a plan whose `after` links form a cycle
    demo: plan-unknown-profile   give a card a profile that does not exist
    demo: plan-none          write no plan at all
    demo: judge-fail-once    judge the first turn not done, later turns on the files
    demo: judge-fail         never judge it done
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def directives(text: str) -> list[tuple[str, str]]:
    found = []
    for line in text.splitlines():
        match = re.match(r"\s*demo:\s*([a-z-]+)\s*(.*)$", line)
        if match:
            found.append((match.group(1), match.group(2).strip()))
    return found


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


def main() -> int:
    from kanban import api
    from kanban.worktrees import slug

    card_id = int(os.environ["KANBAN_CARD_ID"])
    token = os.environ["KANBAN_TOKEN"]
    attempt = int(os.environ.get("KANBAN_ATTEMPT", "1"))
    with api.open_board(os.environ["KANBAN_DB"]) as board:
        if os.environ.get("KANBAN_PLAN_FILE") or os.environ.get("KANBAN_VERDICT_FILE"):
            return _goal_role(board, int(os.environ["KANBAN_GOAL_ID"]))
        card = board.get(card_id)
        steps = directives(card.body)
        report = True
        extra: list[str] = []
        for verb, arg in steps:
            if verb.endswith("-once"):
                if attempt > 1:
                    continue
                verb = verb.removesuffix("-once")
            if verb == "sleep":
                time.sleep(float(arg or 1))
            elif verb == "fail":
                print(arg or f"demo agent failing card {card_id} as asked", flush=True)
                return 1
            elif verb == "exit":
                print(f"demo agent exiting with {arg}", flush=True)
                return int(arg)
            elif verb == "ignore-term":
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            elif verb == "hang":
                print("demo agent hanging as asked", flush=True)
                while True:
                    time.sleep(3600)
            elif verb == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            elif verb == "fork":
                subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            elif verb == "block":
                board.block(card_id, reason=arg or "the demo agent needs a decision", token=token)
                return 0
            elif verb == "follow-up":
                child = board.add(
                    arg or f"follow-up of {card_id}", profile=card.profile, parents=[card_id]
                )
                print(f"added follow-up card {child.id}", flush=True)
            elif verb == "touch":
                extra.append(arg)
            elif verb == "no-report":
                report = False

        name = f"{card_id}-{slug(card.title)}"
        out = Path("cards") / f"{name}.md"
        out.parent.mkdir(exist_ok=True)
        inherited = sorted(p.name for p in out.parent.glob("*.md") if p.name != out.name)
        out.write_text(
            f"# {card.title}\n\nWritten by the demo agent for card {card_id}, "
            f"attempt {attempt}.\n\nFound from earlier cards: {', '.join(inherited) or 'none'}\n"
        )
        for path in extra:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"touched by card {card_id}\n")
        if report:
            _git("add", "-A")
            _git("commit", "-q", "-m", f"card {card_id}: {card.title}")
            summary = f"wrote {out}" + (
                f" (saw {len(inherited)} earlier files)" if inherited else ""
            )
            board.complete(card_id, token=token, summary=summary)
        print(f"demo agent finished card {card_id}", flush=True)
        return 0


def _goal_role(board: Any, goal_id: int) -> int:
    """Plan or judge a goal (see the module docstring), then exit 0: the supervisor reads the
    file when the run ends."""

    detail = board.goals.show(goal_id)
    steps = {verb for verb, _ in directives(detail.goal.objective)}
    plan_file = os.environ.get("KANBAN_PLAN_FILE")
    if plan_file:
        if "plan-none" in steps:
            print("demo planner writing no plan, as asked", flush=True)
            return 0
        text = json.dumps(_plan(detail, steps), indent=2)
        Path(plan_file).write_text("{not json" if "plan-malformed" in steps else text)
        print(f"demo planner wrote a plan for goal {goal_id}", flush=True)
        return 0
    verdict = _verdict(detail, steps)
    Path(os.environ["KANBAN_VERDICT_FILE"]).write_text(json.dumps(verdict))
    print(f"demo judge: {'done' if verdict['done'] else 'not done'}: {verdict['reason']}")
    return 0


def _plan(detail: Any, steps: set[str]) -> dict[str, Any]:
    objective = " ".join(
        ln.strip() for ln in detail.goal.objective.splitlines() if not directives(ln)
    ).strip()
    short = objective if len(objective) <= 80 else objective[:79] + "…"
    profile = "no-such-agent" if "plan-unknown-profile" in steps else "demo"
    turn = detail.goal.turn
    cards: list[dict[str, Any]]
    if turn > 1:
        feedback = (detail.turns[-1].feedback or "the judge's reason").splitlines()[0][:200]
        cards = [{"key": "fix", "title": f"Address review: {feedback}", "profile": profile}]
    else:
        parts = [p.strip() for p in objective.split(";") if p.strip()]
        if len(parts) > 1:
            cards = [
                {"key": f"part-{i}", "title": part[:200], "profile": profile}
                for i, part in enumerate(parts, start=1)
            ]
            after = [c["key"] for c in cards]
            cards.append({"key": "integrate", "title": f"Integrate: {short}", "after": after})
        else:
            cards = [
                {"key": "design", "title": f"Design: {short}"},
                {"key": "build", "title": f"Build: {short}", "after": ["design"]},
                {"key": "document", "title": f"Document: {short}", "after": ["design"]},
                {"key": "check", "title": f"Check: {short}", "after": ["build", "document"]},
            ]
        for card in cards:
            card["profile"] = profile
    if "plan-cycle" in steps:
        cards[0]["after"] = [cards[-1]["key"]]
    return {"cards": cards}


def _verdict(detail: Any, steps: set[str]) -> dict[str, Any]:
    from kanban.worktrees import slug

    done = [c for c in detail.cards if c.role is None and c.status == "done"]
    missing = [
        f"cards/{c.id}-{slug(c.title)}.md"
        for c in done
        if not (Path("cards") / f"{c.id}-{slug(c.title)}.md").exists()
    ]
    if missing:
        return {"done": False, "reason": f"missing from the work: {', '.join(missing)}"}
    if "judge-fail" in steps or ("judge-fail-once" in steps and detail.goal.turn == 1):
        return {"done": False, "reason": "the demo judge was asked to find turn 1 not done"}
    return {"done": True, "reason": f"the files of all {len(done)} done cards are present"}


if __name__ == "__main__":
    sys.exit(main())
