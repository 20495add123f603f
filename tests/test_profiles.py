"""Profiles: parsing and validation, lookup order, placeholders, the shipped set, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanban import errors, profiles
from kanban.testing import write_profile

SHIPPED = {"claude-code", "codex", "aider", "hermes", "shell", "demo"}


def test_the_shipped_profiles_load_and_cover_the_real_agents() -> None:
    good, bad = profiles.load_all(repo=None)
    assert bad == {}
    assert set(good) >= SHIPPED
    assert good["claude-code"].command[:2] == ("claude", "-p")
    assert "--permission-mode" in good["claude-code"].command
    assert good["codex"].command[:2] == ("codex", "exec")
    assert "--yes-always" in good["aider"].command
    assert good["hermes"].command[:3] == ("hermes", "chat", "-q")
    for name in SHIPPED - {"shell", "demo"}:
        assert good[name].persona, f"{name} ships without a persona"
        assert good[name].description


def test_the_repository_overrides_shipped_profiles(repo: Path) -> None:
    write_profile(repo, "demo", 'description = "mine"\ncommand = ["true"]\n')
    assert profiles.load("demo", repo=repo).description == "mine"
    assert profiles.load("demo", repo=repo).source == "repo"
    assert profiles.load("demo", repo=None).source == "shipped"


def test_the_user_config_dir_comes_between(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    user = tmp_path / "config" / "kanban" / "profiles"
    user.mkdir(parents=True)
    (user / "codex.toml").write_text('command = ["my-codex"]\n')
    assert profiles.load("codex", repo=repo).command == ("my-codex",)
    write_profile(repo, "codex", 'command = ["repo-codex"]\n')
    assert profiles.load("codex", repo=repo).command == ("repo-codex",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("command = [\n", "does not parse"),
        ("command = []\n", "non-empty list"),
        ('command = ["x", "{nope}"]\n', "unknown placeholder {nope}"),
        ('command = ["x"]\nprompt = "argv"\n', "needs {prompt}"),
        ('command = ["x"]\nprompt = "telepathy"\n', "prompt must be one of"),
        ('command = ["x"]\nworkspace = "cloud"\n', "workspace must be one of"),
        ('command = ["x"]\nconcurrency = 0\n', "concurrency must be"),
        ('command = ["x"]\ntimeout = "soon"\n', "not a duration"),
        ('command = ["x"]\nrate_limit_exit_codes = [300]\n', "exit codes 1-255"),
        ('command = ["x"]\npersona = "../../etc/passwd"\n', "file name beside it"),
        ('command = ["x"]\npersona = "missing.md"\n', "is missing"),
        ('command = ["x"]\nflavour = "spicy"\n', "unknown key(s) flavour"),
        ('command = ["x"]\nenv = { A = 1 }\n', "table of strings"),
        ('command = ["x"]\noutput = "xml"\n', "output must be one of"),
        ('command = ["x"]\nidle_timeout = "0s"\n', "idle_timeout must be more than 0"),
        ('command = ["x"]\nidle_timeout = "whenever"\n', "not a duration"),
        ('command = ["x"]\nauth_patterns = "login"\n', "list of regular expressions"),
        ('command = ["x"]\nnoise_patterns = ["(unclosed"]\n', "is not a regular expression"),
        ('command = ["x"]\nmax_cost_usd = -1\n', "amount in USD above 0"),
        ('command = ["x"]\nmax_cost_usd = "2"\n', "amount in USD above 0"),
        ('command = ["x"]\ntoken_prices = { input = 1 }\n', "token_prices must be"),
        ('command = ["x"]\ntoken_prices = [1, 2]\n', "token_prices must be"),
    ],
)
def test_bad_profiles_are_refused_with_the_reason(repo: Path, body: str, message: str) -> None:
    write_profile(repo, "bad", body)
    with pytest.raises(errors.ProfileError) as caught:
        profiles.load("bad", repo=repo)
    assert message in caught.value.message


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 80])
def test_profile_names_cannot_escape_the_profile_directories(name: str) -> None:
    with pytest.raises(errors.ProfileError, match="not valid"):
        profiles.load(name, repo=None)


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(errors.ProfileError, match=r"known profiles: .*claude-code"):
        profiles.load("nobody", repo=None)


def test_output_failure_and_cost_keys_parse() -> None:
    profile = profiles.parse(
        "t",
        b'command = ["x"]\noutput = "codex-json"\nidle_timeout = "90s"\n'
        b'auth_patterns = ["^Not logged in"]\nrate_limit_patterns = ["429"]\n'
        b'noise_patterns = ["Reconnecting"]\nmax_cost_usd = 2.5\n'
        b"token_prices = { input = 1.25, output = 10 }\n",
    )
    assert profile.output == "codex-json" and profile.idle_timeout == 90.0
    assert profile.auth_patterns == ("^Not logged in",)
    assert profile.rate_limit_patterns == ("429",)
    assert profile.noise_patterns == ("Reconnecting",)
    assert profile.max_cost_usd == 2.5 and profile.token_prices == (1.25, 10.0)
    plain = profiles.parse("t", b'command = ["x"]\n')
    assert (plain.output, plain.idle_timeout, plain.auth_patterns) == ("text", None, ())


def test_the_shipped_agent_profiles_read_their_output_and_know_their_failures() -> None:
    good, _ = profiles.load_all(repo=None)
    assert good["claude-code"].output == "claude-stream-json"
    assert good["codex"].output == "codex-json" and "--json" in good["codex"].command
    assert good["aider"].output == "aider"
    assert good["hermes"].output == "text"
    for name in ("claude-code", "codex", "aider", "hermes"):
        assert good[name].idle_timeout is not None, name
        assert good[name].auth_patterns and good[name].rate_limit_patterns, name


def test_placeholders_are_filled_literally_without_a_shell() -> None:
    profile = profiles.parse(
        "t", b'command = ["agent", "--msg", "{prompt}", "{title}"]\nprompt = "argv"\n'
    )
    nasty = "$(rm -rf /); `x` {worktree} && echo"
    argv = profile.argv({"prompt": nasty, "title": "t{card_id}"})
    assert argv == ["agent", "--msg", nasty, "t{card_id}"]


def test_check_finds_missing_programs() -> None:
    profile = profiles.parse("t", b'command = ["kanban-no-such-program-xyz"]\n')
    assert profiles.check(profile) == [
        "'kanban-no-such-program-xyz' is not installed or not on PATH"
    ]
    assert profiles.check(profiles.load("demo", repo=None)) == []


def test_cli_profiles_ls_show_check(cli) -> None:  # type: ignore[no-untyped-def]
    listed = cli.ok("profiles", "ls").output
    assert all(name in listed for name in SHIPPED)
    assert '"command"' in cli.ok("profiles", "show", "codex", "--json").output
    assert cli.ok("profiles", "check", "demo").output.strip() == "demo: ok"
    result = cli("profiles", "check", "claude-code")
    assert result.exit_code == 1 and "'claude' is not installed" in result.output


def test_an_edited_profile_is_read_again(repo: Path) -> None:
    write_profile(repo, "mine", 'command = ["one"]\n')
    good, _ = profiles.load_all(repo=repo)
    assert good["mine"].command == ("one",)
    path = write_profile(repo, "mine", 'command = ["two", "args"]\n')  # a different size
    good, _ = profiles.load_all(repo=repo)
    assert good["mine"].command == ("two", "args")
    path.unlink()
    good, _ = profiles.load_all(repo=repo)
    assert "mine" not in good
