"""Per-card agent choices (model, extra arguments and variables a profile allows) and
resumed sessions: profile keys, refusals, what reaches the agent, what the run records.

The real agents resuming their own sessions are in tests/realagents; here a small Python
agent shows exactly which argv and variables the supervisor gave it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kanban import errors, outputs, profiles, prompt, supervisor, views
from kanban.testing import board_in, drain, git, write_profile

# An agent that writes down how it was started, then prints a token line for the reader.
RECORDER = """\
import json, os, sys
json.dump({"argv": sys.argv[1:], "greeting": os.environ.get("GREETING")}, open("started.json", "w"))
print("Tokens: 1.0k sent, 500 received.")
"""


def choosy(repo: Path) -> None:
    script = repo.parent / "recorder.py"
    script.write_text(RECORDER)
    write_profile(
        repo,
        "choosy",
        f"""
command = ["{{python}}", "{script}", "--fixed"]
output = "aider"
workspace = "worktree"
model_args = ["--model", "{{model}}"]
card_args = ["--effort"]
card_env = ["GREETING"]
token_prices = {{ input = 1.0, output = 1.0 }}
model_prices = {{ "big-model" = {{ input = 2.0, output = 10.0 }} }}
""",
    )


def parse(body: str) -> profiles.Profile:
    return profiles.parse("p", body.encode())


# ---------------------------------------------------------------------- profile keys


def test_a_profile_composes_model_and_extra_arguments_after_its_command() -> None:
    p = parse('command = ["agent", "{prompt}"]\nprompt = "argv"\nmodel_args = ["-m", "{model}"]')
    assert p.argv({"prompt": "hi"}) == ["agent", "hi"]
    assert p.argv({"prompt": "hi"}, model="m1", extra=["--x=1"]) == [
        "agent",
        "hi",
        "-m",
        "m1",
        "--x=1",
    ]


def test_resume_is_its_own_command_with_the_session_filled_in() -> None:
    p = parse(
        'command = ["agent", "{prompt}"]\nprompt = "argv"\n'
        'resume = ["agent", "--resume", "{session}", "{prompt}"]'
    )
    assert p.argv({"prompt": "answer"}, session="s-1") == ["agent", "--resume", "s-1", "answer"]
    assert p.argv({"prompt": "whole"}) == ["agent", "whole"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('resume = ["agent", "{prompt}"]', "resume needs {session}"),
        ('resume = ["agent", "{nope}"]', "unknown placeholder {nope}"),
        ('model_args = ["--model"]', "model_args needs {model}"),
        ('model_args = ["--model", "{model}", "{prompt}"]', "unknown placeholder {prompt}"),
        ('command = ["agent", "{session}", "{prompt_file}"]', "unknown placeholder {session}"),
        ('card_args = ["--ok", 3]', "card_args must be a list of option names"),
        ('card_env = "GREETING"', "card_env must be a list of variable names"),
        ('model_prices = { "m" = { input = 1 } }', "token_prices must be"),
        ('scratch = ["a/b"]', "scratch must be a list of file name globs"),
    ],
)
def test_malformed_choice_keys_are_refused_when_the_profile_loads(body: str, message: str) -> None:
    text = body if body.startswith("command") else f'command = ["agent", "{{prompt_file}}"]\n{body}'
    with pytest.raises(errors.ProfileError, match=message.replace("{", r"\{").replace("}", r"\}")):
        parse(text)


def test_the_shipped_agent_profiles_can_resume_and_take_a_model() -> None:
    shipped = {n: profiles.load(n, repo=None) for n in ("claude-code", "codex", "hermes", "aider")}
    assert {n for n, p in shipped.items() if p.resume} == {"claude-code", "codex", "hermes"}
    assert all(p.model_args for p in shipped.values())
    codex = shipped["codex"].argv(
        {
            "prompt": "go",
            "git_dir": "/r/.git/worktrees/w",
            "git_common_dir": "/r/.git",
            "kanban": "/venv/bin/kanban",
            "socket": "/run/s",
            "card_id": "1",
        },
        session="abc",
    )
    assert codex[-3:] == ["resume", "abc", "go"]
    assert codex[codex.index("/r/.git") - 1] == "--add-dir"


# ---------------------------------------------------------------------- what a card may choose


def test_a_card_may_only_choose_what_its_profile_allows(repo: Path, repo_db: str) -> None:
    choosy(repo)
    write_profile(repo, "plain", 'command = ["true"]\nworkspace = "none"\n')
    with board_in(repo) as b:
        before = len(b.cards(include_archived=True))
        for kwargs, message in [
            ({"profile": "plain", "model": "m"}, "takes no per-card model"),
            ({"profile": "choosy", "agent_args": ["--dangerous"]}, "does not let a card pass"),
            ({"profile": "choosy", "agent_env": {"PATH": "/evil"}}, "does not let a card set PATH"),
            ({"profile": None, "model": "m"}, "needs a profile that allows it"),
            ({"profile": "choosy", "agent_env": {"KANBAN_DB": "x"}}, "does not let a card set"),
            ({"profile": "choosy", "agent_args": ["positional"]}, "does not let a card pass"),
        ]:
            with pytest.raises(errors.KanbanError, match=message):
                b.add("x", **kwargs)  # type: ignore[arg-type]
        assert len(b.cards(include_archived=True)) == before  # nothing was added
        card = b.add(
            "x",
            profile="choosy",
            model="big-model",
            agent_args=["--effort=high"],
            agent_env={"GREETING": "bonjour"},
        )
        assert (card.model, card.agent_args, dict(card.agent_env)) == (
            "big-model",
            ("--effort=high",),
            {"GREETING": "bonjour"},
        )
        assert b.set_agent_choices(card.id).model is None  # cleared


def test_a_run_gets_the_cards_model_arguments_and_variables_and_records_the_model(
    repo: Path, repo_db: str
) -> None:
    choosy(repo)
    with board_in(repo) as b:
        card = b.add(
            "Record how you were started",
            profile="choosy",
            model="big-model",
            agent_args=["--effort=high"],
            agent_env={"GREETING": "bonjour"},
        )
        drain(repo)
        run = b.runs(card.id)[-1]
        assert b.get(card.id).status == "done", run.error
        assert run.branch is not None
        started = json.loads(git(repo, "show", f"{run.branch}:started.json"))
        assert started == {
            "argv": ["--fixed", "--model", "big-model", "--effort=high"],
            "greeting": "bonjour",
        }
        assert run.model == "big-model"
        log = Path(run.log_path or "").read_text()  # the run's log says what it ran with
        assert "(model big-model) with --effort=high; card sets GREETING" in log
        assert "bonjour" not in log  # a variable's value is not written down
        # 1,000 tokens in and 500 out at the model's prices, not the profile's.
        assert run.cost_usd == pytest.approx((1000 * 2.0 + 500 * 10.0) / 1e6)


def test_the_cli_takes_model_arg_and_env_on_add(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from kanban.cli import cli

    choosy(repo)
    board_in(repo).close()
    monkeypatch.chdir(repo)
    runner = CliRunner()
    args = ["add", "t", "--profile", "choosy", "--model", "big-model", "--arg", "--effort=low"]
    result = runner.invoke(cli, [*args, "--env", "GREETING=hi", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "big-model" and data["agent_args"] == ["--effort=low"]
    bad = runner.invoke(cli, ["add", "t", "--profile", "choosy", "--env", "NOEQUALS"])
    assert bad.exit_code != 0 and "is not KEY=VALUE" in bad.output
    refused = runner.invoke(cli, ["add", "t", "--profile", "choosy", "--arg", "--rm-rf"])
    assert refused.exit_code != 0 and "does not let a card pass '--rm-rf'" in refused.output


# ---------------------------------------------------------------------- sessions


@pytest.mark.parametrize(
    ("kind", "lines", "session"),
    [
        ("claude-stream-json", ['{"type":"system","session_id":"c-1"}', '{"type":"x"}'], "c-1"),
        ("codex-json", ['{"type":"thread.started","thread_id":"t-9"}'], "t-9"),
        ("text", ["work", "session_id: 20261201_1", "Done."], "20261201_1"),
        ("text", ["no session here"], None),
        ("codex-json", ["not json", '{"type":"turn.started"}'], None),
    ],
)
def test_the_agents_session_id_is_read_from_its_own_output(
    kind: str, lines: list[str], session: str | None
) -> None:
    assert outputs.session_in(kind, lines) == session


def _run(
    run_id: int, *, outcome: str | None, session: str | None, profile: str = "p"
) -> views.RunView:
    import datetime as dt

    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    return views.RunView(
        id=run_id,
        card_id=1,
        attempt=run_id,
        max_attempts=3,
        profile=profile,
        worker=None,
        host="h",
        claimed_at=now,
        lease_expires_at=now,
        ended_at=now if outcome else None,
        outcome=outcome,
        session_id=session,
    )


def _detail(runs: list[views.RunView]) -> views.CardDetail:
    card = views.CardView(id=1, title="t", status="running", profile="p", priority=0, parents=())
    return views.CardDetail(
        card=card, parents=(), children=(), runs=tuple(runs), events=(), comments=()
    )


@pytest.mark.parametrize(
    ("runs", "resume", "expected"),
    [
        (
            [_run(1, outcome="blocked", session="s1"), _run(2, outcome=None, session=None)],
            True,
            "s1",
        ),
        ([_run(1, outcome=None, session=None)], True, None),  # the first attempt
        (
            [_run(1, outcome="failed", session="s1"), _run(2, outcome=None, session=None)],
            False,
            None,
        ),
        (
            [
                _run(1, outcome="failed", session="s1"),
                _run(2, outcome="failed", session=None),
                _run(3, outcome=None, session=None),
            ],
            True,
            None,  # the latest attempt kept none: start afresh, do not reach back further
        ),
        (
            [
                _run(1, outcome="blocked", session="s1", profile="other"),
                _run(2, outcome=None, session=None),
            ],
            True,
            None,
        ),
    ],
)
def test_which_session_an_attempt_resumes(
    runs: list[views.RunView], resume: bool, expected: str | None
) -> None:
    body = 'command = ["a", "{prompt}"]\nprompt = "argv"\n'
    if resume:
        body += 'resume = ["a", "--resume", "{session}", "{prompt}"]\n'
    found = supervisor.resumable_session(_detail(runs), parse(body), run_id=runs[-1].id)
    assert (found.id if found else None) == expected


def test_the_resume_message_carries_only_what_is_new_and_how_to_report() -> None:
    import datetime as dt

    ended = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    earlier = _run(1, outcome="blocked", session="s1")
    earlier = dataclasses.replace(earlier, ended_at=ended, error="Which port?")
    old = views.CommentView(
        id=1, card_id=1, at=ended - dt.timedelta(hours=1), author="a", body="old note"
    )
    new = views.CommentView(
        id=2, card_id=1, at=ended + dt.timedelta(minutes=5), author="ann", body="Use 8080."
    )
    detail = views.CardDetail(
        card=_detail([]).card,
        parents=(),
        children=(),
        runs=(earlier,),
        events=(),
        comments=(old, new),
    )
    text = prompt.render_resume(detail, since=earlier)
    assert "Use 8080." in text and "old note" not in text
    assert "ended blocked: Which port?" in text
    assert prompt.kanban_command() in text and "complete --summary" in text


def test_the_prompt_names_an_absolute_kanban_command() -> None:
    command = prompt.kanban_command()
    assert command.startswith("/") or command.startswith("'/")


# ---------------------------------------------------------------------- planners choose too


def test_a_plan_may_give_a_card_a_model_its_profile_takes(repo: Path, repo_db: str) -> None:
    from kanban import goals as goal_verbs
    from kanban import plans

    choosy(repo)
    write_profile(repo, "plain", 'command = ["true"]\nworkspace = "none"\n')
    plan = {
        "cards": [
            {
                "key": "a",
                "title": "Big",
                "profile": "choosy",
                "model": "big-model",
                "args": ["--effort=high"],
                "env": {"GREETING": "hi"},
            },
            {"key": "b", "title": "Plain", "profile": "plain"},
        ]
    }
    path = repo.parent / "plan.json"
    path.write_text(json.dumps(plan))
    with board_in(repo) as b:
        b.goals.add("Two cards", plan=goal_verbs.read_plan(path, repo=repo))
        made = {c.title: c for c in b.cards(include_archived=True)}
        assert made["Big"].model == "big-model" and made["Plain"].model is None
        assert made["Big"].agent_args == ("--effort=high",)
        assert dict(made["Big"].agent_env) == {"GREETING": "hi"}
        path.write_text(json.dumps({"cards": [{**plan["cards"][1], "model": "m"}]}))
        with pytest.raises(errors.PlanError, match="card 'b': profile plain takes no per-card"):
            goal_verbs.read_plan(path, repo=repo)
        with pytest.raises(errors.PlanError, match="`model` must be a model name"):
            plans.check_plan(
                [{"key": "x", "title": "t", "profile": "plain", "model": 3}],
                known_profiles=["plain"],
            )


def test_edit_changes_the_model_and_keeps_what_it_was_not_asked_to(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from kanban.cli import cli

    choosy(repo)
    board_in(repo).close()
    monkeypatch.chdir(repo)
    runner = CliRunner()

    def run(*args: str) -> dict[str, object]:
        result = runner.invoke(cli, [*args, "--json"])
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    run("add", "t", "--profile", "choosy", "--arg", "--effort=low")
    edited = run("edit", "1", "--model", "big-model")
    assert edited["changed"] == {"model": {"from": None, "to": "big-model"}}
    card = edited["card"]
    assert isinstance(card, dict)
    assert card["model"] == "big-model" and card["agent_args"] == ["--effort=low"]
    assert run("edit", "1", "--no-model")["card"]["model"] is None  # type: ignore[index]
    refused = runner.invoke(cli, ["edit", "1", "--env", "PATH=/x"])
    assert refused.exit_code != 0 and "does not let a card set PATH" in refused.output
