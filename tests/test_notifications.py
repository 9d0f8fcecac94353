"""Escalation notices: the durable outbox, readable through the API and relayed by SMTP."""

from __future__ import annotations

import asyncio

from aiosmtpd.controller import Controller

from infra.notify import SmtpRelay
from tests.driver import Regime
from tests.harness import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(envelope)
        return "250 OK"


async def test_breach_notice_in_outbox_and_relayed_by_smtp(stack):
    reg = await Regime.place(stack, "RN1")
    await reg.advance(30, diligent=False)
    await stack.settle(reg.id)
    r = await stack.http.get(f"/notifications?regime_id={reg.id}", headers=stack.auth("ops", "operations"))
    assert r.status_code == 200
    breach = [n for n in r.json()["items"] if n["rung"] == "breach" and n["step_id"] == "improvement_plan"]
    assert len(breach) == 1 and breach[0]["recipients"] == ["trust", "improvement_director"]
    assert "overdue" in breach[0]["body"] or "was due" in breach[0]["body"]
    assert (await stack.http.get("/notifications", headers=reg.users["trust"])).status_code == 403

    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        relay = SmtpRelay(stack.pool, "127.0.0.1", port, "special-measures@example.org", domain="example.org")
        sent = await relay.drain_once()
        assert sent == len(r.json()["items"]) and sent >= 2
        assert await relay.drain_once() == 0  # each notice is sent once
    finally:
        smtp.stop()
    await asyncio.sleep(0)
    tos = [m.rcpt_tos for m in inbox.messages]
    assert ["trust@example.org", "improvement_director@example.org"] in tos
    unsent = await stack.pool.fetchval("SELECT count(*) FROM notifications WHERE sent_at IS NULL")
    assert unsent == 0
