"""The web board in a real browser: Playwright driving the distribution's Chromium
(/usr/bin/chromium, installed by .ci/run; nothing is downloaded at test time) against a real
`kanban serve`, with real `kanban` processes changing the board meanwhile.

Screenshots of the board and of a card go to $KANBAN_ARTIFACTS (default: artifacts/).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kanban.testing import board_in, drain, kanban_process, kill_run_processes, serve_process

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("KANBAN_ARTIFACTS") or Path(__file__).parent.parent / "artifacts")
WAIT = 20_000  # ms: generous, never a measure of speed

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT)
    yield page
    context.close()


def serve(repo: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    with board_in(repo):
        pass
    proc, base = serve_process(repo, *args, env=env)
    try:
        yield base
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.fixture
def served(repo: Path) -> Iterator[str]:
    yield from serve(repo)


def cli(repo: Path, *args: str) -> str:
    proc = kanban_process(repo, *args)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out.strip()


def tile(status: str, card: int | str) -> str:
    return f'.column[data-status="{status}"] [data-card="{card}"]'


def test_the_board_lists_cards_and_a_hostile_title_stays_text(
    page: Any, served: str, repo: Path
) -> None:
    hostile = '<img src=x onerror="window.pwned=1">'
    plain = cli(repo, "add", "write the parser", "--profile", "demo", "-q")
    evil = cli(repo, "add", hostile, "-q")
    cli(repo, "comment", evil, hostile)
    page.goto(f"{served}/")
    assert page.locator(tile("ready", plain)).inner_text().count("write the parser") == 1
    assert hostile in page.locator(tile("ready", evil)).inner_text()
    page.goto(f"{served}/cards/{evil}")
    assert page.locator("h1").inner_text().endswith(hostile)
    assert page.locator("img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_a_card_added_from_the_cli_appears_live(page: Any, served: str, repo: Path) -> None:
    page.goto(f"{served}/")
    page.wait_for_selector("#live.on")
    page.evaluate("window.sameLoad = true")
    card = cli(repo, "add", "made in a terminal", "-q")
    page.wait_for_selector(tile("ready", card))
    assert page.evaluate("window.sameLoad") is True  # no reload: the stream updated it
    assert "1" in page.locator('.column[data-status="ready"] h2 .count').inner_text()


def test_an_agent_run_moves_a_card_across_columns(page: Any, served: str, repo: Path) -> None:
    card = cli(repo, "add", "slow demo work", "--profile", "demo", "--body", "demo: sleep 6", "-q")
    page.goto(f"{served}/")
    page.wait_for_selector(tile("ready", card))
    page.evaluate("window.sameLoad = true")
    dispatcher = kanban_process(repo, "dispatch", stdout=subprocess.DEVNULL)
    try:
        page.wait_for_selector(tile("running", card))
        assert page.evaluate("window.sameLoad") is True
        page.wait_for_selector("#dispatchers .h-alive")
        page.goto(f"{served}/cards/{card}")  # while it runs: the log follows the run
        page.evaluate("window.sameLoad = true")
        page.wait_for_function(
            "document.getElementById('log').textContent.includes('demo agent finished card')"
        )
        page.wait_for_selector("#runs .o-done")
        assert page.evaluate("window.sameLoad") is True
        page.goto(f"{served}/")
        page.wait_for_selector(tile("done", card), state="attached")  # folded: in a <details>
        assert page.locator(tile("running", card)).count() == 0
    finally:
        dispatcher.terminate()
        dispatcher.wait(timeout=30)
        with board_in(repo) as b:
            kill_run_processes(b)


def test_unblock_with_an_answer_from_the_page(page: Any, served: str, repo: Path) -> None:
    card = cli(repo, "add", "pick a format", "-q")
    cli(repo, "block", card, "--reason", "CSV or Parquet?")
    page.goto(f"{served}/cards/{card}")
    assert "CSV or Parquet?" in page.locator(".card-head").inner_text()
    page.fill("#answer", "Parquet, partitioned by day")
    page.click("text=Unblock")
    page.wait_for_selector(".card-head .status.s-ready")
    assert "Parquet, partitioned by day" in page.locator("#comments").inner_text()
    with board_in(repo) as b:
        shown = b.show(int(card))
    assert shown.card.status == "ready"
    assert [m.body for m in shown.comments] == ["Parquet, partitioned by day"]


def test_the_token_is_enforced(page: Any, repo: Path) -> None:
    token = "browser-test-token-0123456789abcdef"
    for base in serve(repo, env={"KANBAN_WEB_TOKEN": token}):
        card = cli(repo, "add", "behind the login", "-q")
        base = base.replace("127.0.0.1", "localhost")  # a secure context for the Secure cookie
        page.goto(f"{base}/")
        assert page.url.startswith(f"{base}/login")
        assert "behind the login" not in page.content()
        page.fill("#token", "not-the-token-at-all")
        page.click("text=Log in")
        assert "not the board's token" in page.content()
        page.fill("#token", token)
        page.click("text=Log in")
        page.wait_for_selector(tile("ready", card))
        status = page.evaluate("fetch('/api/cards').then(r => r.status)")
        assert status == 200  # the login cookie also opens the API to the page's own fetches
        bare = page.context.browser.new_context().request.get(f"{base}/api/cards")
        assert bare.status == 401


def test_screenshots_of_the_board_and_a_card(page: Any, served: str, repo: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for title in ("Set up the repository layout", "Write the data model"):
        cli(repo, "add", title, "--profile", "demo", "-q")
    drain(repo)
    first = cli(
        repo, "add", "Design the export format", "--profile", "demo", "--priority", "2", "-q"
    )
    second = cli(repo, "add", "Write the exporter", "--profile", "demo", "--parent", first, "-q")
    cli(repo, "add", "Document the exporter", "--profile", "demo", "--parent", second, "-q")
    blocked = cli(repo, "add", "Choose a compression codec", "-q")
    cli(repo, "block", blocked, "--reason", "zstd or gzip? Ask the data team")
    cli(repo, "comment", blocked, "zstd is faster to read; gzip is everywhere")
    cli(repo, "add", "Review the retry policy", "--review", "-q")
    page.goto(f"{served}/?card={second}")
    page.wait_for_selector("#live.on")
    page.screenshot(path=str(ARTIFACTS / "web-board.png"))
    page.goto(f"{served}/cards/{blocked}")
    page.screenshot(path=str(ARTIFACTS / "web-card.png"))
    for name in ("web-board.png", "web-card.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
