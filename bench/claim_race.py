"""Concurrent claims against a real database: N workers race for the same tickets, then for
the queue with claim-next. Prints attempts vs grants and the time taken.

    .venv/bin/python -m bench.claim_race --url postgresql+psycopg://root@127.0.0.1:5432/test
    .venv/bin/python -m bench.claim_race --url sqlite:///var/bench-claims.sqlite
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
import uuid

from assistant.core.db import Databases
from assistant.core.errors import ClaimConflict
from assistant.core.vault import Vault
from assistant.escalation.service import Actor, SqlEscalationService


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--tickets", type=int, default=50)
    args = parser.parse_args()
    desk = SqlEscalationService(Databases().engine(args.url), Vault.development())  # a throwaway bench queue
    centre = f"bench-{uuid.uuid4().hex[:6]}"

    def open_batch() -> list[str]:
        return [desk.open_ticket(kind="human_request", priority="normal", session_id=f"b-{uuid.uuid4().hex[:8]}",
                                 channel="web", user_id="bench", summary="bench", centre=centre).ticket_id
                for _ in range(args.tickets)]

    workers = [Actor(f"w{i}", "worker", centre) for i in range(args.workers)]
    for mode in ("claim", "claim_next"):
        tickets = open_batch()
        grants, attempts, conflicts, elapsed = race(desk, workers, mode, tickets)
        per_ticket = collections.Counter(t for t, _ in grants)
        double = sum(1 for n in per_ticket.values() if n > 1)
        print(f"{desk.engine.dialect.name} {mode}: {len(workers)} workers, {len(tickets)} tickets, "
              f"{attempts} claims attempted, {len(grants)} granted, {conflicts} refused as already claimed, "
              f"{double} tickets granted twice, {len(tickets) - len(per_ticket)} never granted, {elapsed:.2f} s")


def race(desk: SqlEscalationService, workers: list[Actor], mode: str,
         tickets: list[str]) -> tuple[list[tuple[str, str]], int, int, float]:
    """One round: every worker starts at once and claims (``mode`` "claim": each ticket in turn;
    "claim_next": from the queue until it is empty). Returns grants, attempts, conflicts, seconds."""
    grants: list[tuple[str, str]] = []
    attempts = conflicts = 0
    lock = threading.Lock()
    barrier = threading.Barrier(len(workers))

    def work(actor: Actor) -> None:
        nonlocal attempts, conflicts
        barrier.wait()
        if mode == "claim":
            for ticket_id in tickets:
                try:
                    desk.claim(ticket_id, actor)
                    with lock:
                        attempts += 1
                        grants.append((ticket_id, actor.username))
                except ClaimConflict:
                    with lock:
                        attempts += 1
                        conflicts += 1
        else:
            while (ticket := desk.claim_next(actor)) is not None:
                with lock:
                    attempts += 1
                    grants.append((ticket.ticket_id, actor.username))

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return grants, attempts, conflicts, time.perf_counter() - started

if __name__ == "__main__":
    main()
