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
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path


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


if __name__ == "__main__":
    sys.exit(main())
