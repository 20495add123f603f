"""What the guide promises a reader: its signature snippet verifies a real delivery, and a
message's link opens the card on the web board, where the answer box unblocks it."""

from __future__ import annotations

import re
from pathlib import Path

import kanban
from kanban import clock
from kanban.board import subscriptions
from kanban.notify import courier
from kanban.testing import Receiver

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "howto" / "notifications.md"


def _snippet() -> str:
    [code] = [
        block
        for block in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
        if "def verify_signature" in block
    ]
    return str(code)


def test_the_documented_snippet_verifies_a_real_signed_delivery(tmp_path: Path) -> None:
    namespace: dict[str, object] = {}
    exec(compile(_snippet(), str(GUIDE), "exec"), namespace)  # our own docs
    verify = namespace["verify_signature"]
    receiver = Receiver()
    try:
        with kanban.open_board(tmp_path / "board.db") as b:
            b.tx.write(
                lambda c: subscriptions.add_subscription(
                    c, name="r", url=receiver.url, secret_env="S", format="json", now=clock.now()
                )
            )
            card = b.add("Card", profile="demo")
            b.block(card.id, reason="?")
            courier.Courier(b, name="t", environ={"S": "the secret"}).deliver_due()
        [(headers, body, _)] = receiver.requests
    finally:
        receiver.close()
    assert verify("the secret", body, headers["Kanban-Signature"]) is True  # type: ignore[operator]
    assert verify("the secret", body + b" ", headers["Kanban-Signature"]) is False  # type: ignore[operator]
    assert verify("another", body, headers["Kanban-Signature"]) is False  # type: ignore[operator]


def test_the_link_in_a_message_opens_the_card_and_its_answer_unblocks_it(
    tmp_path: Path,
) -> None:
    import json
    from urllib.parse import urlsplit

    from starlette.testclient import TestClient

    from kanban import web

    receiver = Receiver()
    try:
        with kanban.open_board(tmp_path / "board.db", web_url="https://127.0.0.1") as b:
            b.tx.write(
                lambda c: subscriptions.add_subscription(
                    c, name="slack", url=receiver.url, format="slack", now=clock.now()
                )
            )
            card = b.add("Pick a database", profile="demo")
            b.block(card.id, reason="Postgres or MySQL?")
            courier.Courier(b, name="t").deliver_due()
            text = json.loads(receiver.requests[0][1])["text"]
            [link] = re.findall(r"<(https://[^|>]+)\|Answer and unblock>", text)
            parts = urlsplit(link)
            assert (parts.path, parts.fragment) == (f"/cards/{card.id}", "answer")
            with TestClient(web.create_app(b), base_url="https://127.0.0.1") as client:
                page = client.get(parts.path).text
                assert "Pick a database" in page and 'id="answer"' in page
                [csrf] = re.findall(r'name="csrf" value="([^"]+)"', page)[:1]
                done = client.post(
                    f"{parts.path}/unblock",
                    data={"note": "Postgres", "csrf": csrf},
                    follow_redirects=False,
                )
            assert done.status_code == 303 and b.get(card.id).status == "ready"
            assert b.show(card.id).comments[-1].body == "Postgres"
    finally:
        receiver.close()
