"""Every shipped profile doing real work with its real agent binary, offline.

The agents are the real `claude`, `codex`, `hermes` and `aider` (installed once; see
conftest.py), configured the way a user points each at a local model server
(`kanban.scripted_model.point_agent`, docs/howto/local-models.md). The model behind them is
the scripted service in `kanban.scripted_model`: it plays the tool calls a model would make
(write a file, commit, report with the `kanban` command the prompt names) and records what
the agent sent. Everything between is real: a `kanban dispatch --drain` process, supervisors,
worktrees, the agents' own tools, git.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import kanban
from kanban import scripted_model as sm
from kanban.cli import cli
from kanban.testing import (
    board_in,
    drain,
    git,
    kill_run_processes,
    pid_alive,
    wait_for,
    write_profile,
)

from .conftest import CACHE, RealAgents

pytestmark = [pytest.mark.realagents, pytest.mark.slow]

# profile -> the agent program it runs
AGENTS = {"claude-code": "claude", "codex": "codex", "hermes": "hermes", "aider": "aider"}


@pytest.fixture
def board(repo: Path) -> Iterator[kanban.Board]:
    b = board_in(repo)
    yield b
    kill_run_processes(b)
    b.close()


@pytest.fixture
def home() -> Iterator[Path]:
    """A throwaway HOME outside /tmp: Codex refuses to put its helper links (which its
    bubblewrap sandbox needs) under a temporary directory, and a user's HOME is not one."""
    path = CACHE / "homes" / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def agent_env(real_agents: RealAgents, home: Path, agent: str, model: sm.ScriptedModel) -> dict:
    env = real_agents.env(home, agent)
    env.update(sm.point_agent(agent, model, home))
    return env


def path_without(program: str, where: Path) -> str:
    """A PATH with every program of this one but `program`: a machine without it."""
    where.mkdir(parents=True, exist_ok=True)
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = where / entry.name
            if entry.name != program and not link.exists():
                link.symlink_to(entry.path)
    return str(where)


def commits_on(repo: Path, branch: str) -> list[str]:
    return git(repo, "log", "--format=%s", f"main..{branch}").splitlines()


COMMIT = "printf 'hello from {who}\\n' > hello.txt && git add hello.txt && git commit -qm 'Add hello.txt'"


def work_script(who: str) -> list[sm.Step]:
    """What a model would have the agent do: write and commit a file, file a follow-up card,
    report done with its own `kanban complete`, and end with a message."""
    return [
        sm.Shell(COMMIT.format(who=who), usage=sm.Usage(1200, 80)),
        sm.Shell(
            "{kanban} add 'Document hello.txt' --parent \"$KANBAN_CARD_ID\" --profile shell",
            usage=sm.Usage(1400, 40),
        ),
        sm.Shell(
            "{kanban} complete --summary 'hello.txt written and committed'",
            usage=sm.Usage(1500, 30),
        ),
        sm.Say("Done: hello.txt is committed.", usage=sm.Usage(1600, 20)),
    ]


@pytest.mark.parametrize("profile", ["claude-code", "codex", "hermes"])
def test_a_tool_using_agent_commits_files_adds_a_card_and_reports_itself(
    profile: str, repo: Path, board: kanban.Board, real_agents: RealAgents, home: Path
) -> None:
    agent = AGENTS[profile]
    write_profile(repo, "shell", 'command = ["true"]\nworkspace = "none"\n')
    card = board.add("Write hello.txt", profile=profile, body="Create hello.txt saying hello.")
    with sm.ScriptedModel(work_script(agent)) as model:
        drain(repo, env=agent_env(real_agents, home, agent, model), timeout=300)
        scripted = model.scripted()
        said = model.tool_results()
    final = board.get(card.id)
    runs = board.runs(card.id)
    assert final.status == "done", (final.reason, [r.error for r in runs])
    # The agent's own `kanban complete` is what the board recorded (not its last chat line).
    assert final.summary == "hello.txt written and committed", said
    assert [r.outcome for r in runs] == ["done"]
    # Its own commit, with the file, is on the card's branch; kanban committed nothing for it.
    branch = runs[0].branch
    assert branch is not None
    assert commits_on(repo, branch) == ["Add hello.txt"]
    assert git(repo, "show", f"{branch}:hello.txt") == f"hello from {agent}"
    # The follow-up card it filed is a child of its card.
    children = [c for c in board.cards() if c.title == "Document hello.txt"]
    assert len(children) == 1 and card.id in board.show(children[0].id).card.parents
    # The whole script was played, in order, by the agent's main conversation.
    assert sorted({r.step for r in scripted}) == [0, 1, 2, 3]
    if agent != "hermes":  # Hermes prints no usage
        assert runs[0].tokens_in == 1200 + 1400 + 1500 + 1600
        assert runs[0].tokens_out == 80 + 40 + 30 + 20
    if agent == "claude":  # Claude Code prices its own calls
        assert runs[0].cost_usd is not None and runs[0].cost_usd > 0


def test_aider_edits_and_commits_itself_and_leaves_no_files_of_its_own(
    repo: Path, board: kanban.Board, real_agents: RealAgents, home: Path
) -> None:
    card = board.add("Write hello.txt", profile="aider", body="Create hello.txt saying hello.")
    script: list[sm.Step] = [
        sm.Edit("hello.txt", "hello from aider", usage=sm.Usage(2000, 100)),
        sm.Say("hello.txt is written."),
    ]
    with sm.ScriptedModel(script) as model:
        drain(repo, env=agent_env(real_agents, home, "aider", model), timeout=300)
    final = board.get(card.id)
    runs = board.runs(card.id)
    assert final.status == "done", (final.reason, [r.error for r in runs])
    branch = runs[0].branch
    assert branch is not None
    # Aider's own commit (its message comes from its weak-model call); nothing left for kanban.
    commits = commits_on(repo, branch)
    assert len(commits) == 1 and not commits[0].startswith("kanban:"), commits
    assert git(repo, "show", f"{branch}:hello.txt") == "hello from aider"
    files = git(repo, "ls-tree", "-r", "--name-only", branch).splitlines()
    assert sorted(files) == ["README.md", "hello.txt"]  # no .gitignore, no .aider* files
    assert runs[0].tokens_in is not None and runs[0].tokens_in >= 2000
    assert runs[0].cost_usd is not None and runs[0].cost_usd > 0  # from the model's prices


def test_an_agent_that_needs_a_person_blocks_the_card_with_its_question(
    repo: Path, board: kanban.Board, real_agents: RealAgents, home: Path
) -> None:
    card = board.add("Pick the port", profile="claude-code")
    script: list[sm.Step] = [
        sm.Shell("{kanban} block --reason 'Which port should the server listen on?'"),
        sm.Say("I asked which port to use."),
    ]
    with sm.ScriptedModel(script) as model:
        drain(repo, env=agent_env(real_agents, home, "claude", model), timeout=300)
    final = board.get(card.id)
    assert final.status == "blocked"
    assert final.reason == "Which port should the server listen on?"
    assert [r.outcome for r in board.runs(card.id)] == ["blocked"]


PLAN = {
    "cards": [
        {"key": "a", "title": "Write a.txt", "body": "Create a.txt", "profile": "shell"},
        {"key": "b", "title": "Write b.txt", "profile": "shell", "after": ["a"]},
    ]
}


def kanban_cli(repo: Path, *args: str) -> str:
    old = Path.cwd()
    os.chdir(repo)
    try:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("planner", ["claude-code-planner", "codex-planner", "hermes-planner"])
def test_a_real_planner_writes_the_plan_file_and_its_cards_are_proposed(
    planner: str, repo: Path, board: kanban.Board, real_agents: RealAgents, home: Path
) -> None:
    agent = AGENTS[planner.removesuffix("-planner")]
    write_profile(repo, "shell", 'command = ["true"]\nworkspace = "none"\n')
    kanban_cli(repo, "goal", "add", "Two files", "--planner", planner)
    script: list[sm.Step] = [
        sm.Shell(f"cat > \"$KANBAN_PLAN_FILE\" <<'EOF'\n{json.dumps(PLAN)}\nEOF"),
        sm.Say("The plan is written."),
    ]
    with sm.ScriptedModel(script) as model:
        drain(repo, env=agent_env(real_agents, home, agent, model), timeout=300)
    detail = json.loads(kanban_cli(repo, "goal", "show", "1", "--json"))
    assert detail["goal"]["status"] == "proposed", detail
    proposed = [c["title"] for c in detail["cards"] if c["role"] is None]
    assert proposed[:2] == ["Write a.txt", "Write b.txt"], proposed


@pytest.mark.parametrize("judge", ["claude-code-judge", "codex-judge", "hermes-judge"])
def test_a_real_judge_writes_the_verdict_file_and_the_goal_ends_done(
    judge: str, repo: Path, board: kanban.Board, real_agents: RealAgents, home: Path
) -> None:
    agent = AGENTS[judge.removesuffix("-judge")]
    write_profile(repo, "shell", 'command = ["true"]\nworkspace = "none"\n')
    plan = repo.parent / "plan.json"
    plan.write_text(json.dumps(PLAN))
    kanban_cli(
        repo,
        "goal",
        "add",
        "Two files",
        "--plan",
        str(plan),
        "--judge",
        judge,
        "--auto",
    )
    verdict = {"done": True, "reason": "both files are there"}
    script: list[sm.Step] = [
        sm.Shell(f"cat > \"$KANBAN_VERDICT_FILE\" <<'EOF'\n{json.dumps(verdict)}\nEOF"),
        sm.Say("Judged."),
    ]
    with sm.ScriptedModel(script) as model:
        drain(repo, env=agent_env(real_agents, home, agent, model), timeout=300)
        assert model.scripted(), "the judge never called the model"
    detail = json.loads(kanban_cli(repo, "goal", "show", "1", "--json"))
    assert detail["goal"]["status"] == "done", detail


@pytest.mark.parametrize("bubblewrap", ["installed", "absent"])
def test_codex_commits_in_its_sandbox_with_and_without_the_distributions_bubblewrap(
    bubblewrap: str,
    repo: Path,
    board: kanban.Board,
    real_agents: RealAgents,
    home: Path,
    tmp_path: Path,
) -> None:
    """Codex uses bubblewrap from PATH when it is there (it then needs its helper links in
    CODEX_HOME, which it refuses to make under /tmp) and its bundled sandbox otherwise; the
    shipped profile's --add-dir makes its own commit work in a linked worktree either way."""
    if bubblewrap == "installed" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed here (apt-get install bubblewrap)")
    card = board.add("Write hello.txt", profile="codex")
    with sm.ScriptedModel(work_script("codex")[:1] + work_script("codex")[2:]) as model:
        env = agent_env(real_agents, home, "codex", model)
        if bubblewrap == "absent":
            bins = real_agents.need("codex")[0]
            env["PATH"] = os.pathsep.join([str(bins), path_without("bwrap", tmp_path / "bin")])
        drain(repo, env=env, timeout=300)
        said = model.tool_results()
    runs = board.runs(card.id)
    assert board.get(card.id).status == "done", [r.error for r in runs]
    assert board.get(card.id).summary == "hello.txt written and committed", said
    assert runs[0].branch is not None
    assert commits_on(repo, runs[0].branch) == ["Add hello.txt"], said


def ask_then_work(who: str) -> list[sm.Step]:
    """One conversation over two attempts: the agent asks a person and stops (attempt 1);
    resumed with the answer, it goes on in the same conversation (attempt 2)."""
    return [
        sm.Shell("{kanban} block --reason 'Which greeting: hello or bonjour?'"),
        sm.Say("I asked which greeting to use."),
        sm.Shell(COMMIT.format(who=who)),
        sm.Shell("{kanban} complete --summary 'greeting committed'"),
        sm.Say("Committed."),
    ]


def settled(board: kanban.Board, card_id: int) -> list[kanban.views.RunView]:  # type: ignore[name-defined]
    """The card's runs once every supervisor of them has exited (a drain ends when the card
    is blocked; its supervisor may still be writing down what the agent said last)."""
    wait_for(
        lambda: (
            not any(r.supervisor_pid and pid_alive(r.supervisor_pid) for r in board.runs(card_id))
        ),
        timeout=60,
        what="the card's supervisors to exit",
    )
    return board.runs(card_id)


def _said(record: sm.Recorded) -> str:
    return json.dumps(record.body)


@pytest.mark.parametrize("profile", ["claude-code", "codex", "hermes"])
def test_an_answered_card_resumes_the_agents_own_session_with_the_answer(
    profile: str, repo: Path, board: kanban.Board, real_agents: RealAgents, home: Path
) -> None:
    agent = AGENTS[profile]
    card = board.add("Greet", profile=profile, body="Write a greeting to hello.txt.")
    with sm.ScriptedModel(ask_then_work(agent)) as model:
        env = agent_env(real_agents, home, agent, model)
        drain(repo, env=env, timeout=300)
        first = settled(board, card.id)
        assert board.get(card.id).status == "blocked", [r.error for r in first]
        assert first[0].session_id, "the agent's session id was not kept on the run"
        board.unblock(card.id, note="Use bonjour.")
        asked = len(model.scripted())
        drain(repo, env=env, timeout=300)
        resumed = model.scripted()[asked:]
    final = board.get(card.id)
    runs = board.runs(card.id)
    assert final.status == "done", (final.reason, [r.error for r in runs])
    assert final.summary == "greeting committed"
    # The second attempt's first model call carries the first attempt's conversation (its
    # question) and the answer as the new message: the session was resumed, not restarted.
    opening = _said(resumed[0])
    assert "Which greeting: hello or bonjour?" in opening
    assert "Use bonjour." in opening
    assert resumed[0].step == 2  # the script went on where the conversation was
    log = Path(runs[1].log_path or "").read_text()
    assert f"resuming the agent's session {first[0].session_id}" in log


def test_a_failed_resume_falls_back_to_a_fresh_prompt_and_says_so(
    repo: Path, board: kanban.Board, real_agents: RealAgents, home: Path
) -> None:
    card = board.add("Greet", profile="claude-code", body="Write a greeting to hello.txt.")
    script = ask_then_work("claude")
    with sm.ScriptedModel(script) as model:
        env = agent_env(real_agents, home, "claude", model)
        drain(repo, env=env, timeout=300)
        assert board.get(card.id).status == "blocked"
        settled(board, card.id)
        shutil.rmtree(home / ".claude" / "projects")  # the session is gone from this host
        board.unblock(card.id, note="Use bonjour.")
        asked = len(model.scripted())
        drain(repo, env=env, timeout=300)
        afresh = model.scripted()[asked:]
    runs = board.runs(card.id)
    log = Path(runs[1].log_path or "").read_text()
    assert "resuming the session failed" in log and "starting the agent afresh" in log
    # Afresh means the whole prompt, with the answer among the comments, and no old turns.
    assert "Use bonjour." in _said(afresh[0]) and "# Card" in _said(afresh[0])
    assert afresh[0].step == 0


def test_the_real_agent_bench_runs_and_reports_what_kanban_adds(real_agents: RealAgents) -> None:
    """bench/real_agent.py at a toy size: its JSON has the three ways and the difference
    (the figures are for docs/performance.md; nothing here asserts a timing)."""
    from bench import real_agent

    found = real_agent.measure("claude", cards=1, rounds=1, bins=real_agents.need("claude")[0])
    assert set(found) >= {"bare", "cards", "empty", "kanban_per_card"}
    assert found["bare"]["cpu_s"] > 0 and found["cards"]["cpu_s"] > 0
    json.dumps(found)


@pytest.mark.parametrize("profile", ["claude-code", "codex"])
def test_a_real_agent_reports_through_the_kanban_mcp_server_its_profile_registers(
    profile: str, repo: Path, board: kanban.Board, real_agents: RealAgents, home: Path
) -> None:
    """The shipped profile registers `kanban mcp` for the run; the agent calls its
    kanban_complete tool, which acts through the run's socket on the run's card only."""
    agent = AGENTS[profile]
    card = board.add("Write hello.txt", profile=profile)
    script: list[sm.Step] = [
        sm.Shell(COMMIT.format(who=agent)),
        sm.Tool("kanban_complete", {"summary": "reported through MCP"}),
        sm.Say("Done."),
    ]
    with sm.ScriptedModel(script) as model:
        drain(repo, env=agent_env(real_agents, home, agent, model), timeout=300)
        offered = {name for r in model.scripted() for name in sm.tool_names_in(r.body or {})}
        said = model.tool_results()
    final = board.get(card.id)
    assert any(n.endswith("kanban_complete") for n in offered), sorted(offered)
    assert final.status == "done", (final.reason, said)
    assert final.summary == "reported through MCP", said
