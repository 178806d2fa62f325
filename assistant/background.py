"""The background work of a deployment, in rounds: the application outbox and status follow-up,
knowledge-base jobs, the SLA sweep and the analytics pre-count. Any number of processes may run
rounds at once, because each part is shared through the database: outbox rows and jobs are
leased (a dead process's lease runs out and another takes its work), and the sweep and the
pre-count are turns of a `SharedSchedule` (exactly one process per period). `linli worker` runs
every part; a single server (`api.background`) runs all but the outbox, which `make run`'s worker
delivers. WeChat's messages and pushes have their own thread (assistant/wechat/service.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from assistant.core.leases import SharedSchedule
from assistant.services import Services

log = logging.getLogger("linli.background")
T = TypeVar("T")


@dataclass
class RoundReport:
    delivered: int = 0
    refreshed: int = 0
    kb_jobs: int = 0
    swept: int = 0
    counted_days: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def did_something(self) -> bool:
        return bool(self.delivered or self.refreshed or self.kb_jobs or self.swept or self.counted_days)


class BackgroundWork:
    def __init__(self, services: Services, name: str, *, outbox: bool = True) -> None:
        self.services = services
        self.name = name
        self.outbox = outbox
        settings = services.settings
        engine = services.conversations.engine
        self.sweep_turns = SharedSchedule(engine, "sla_sweep", settings.escalation.sweep_interval_s)
        self.count_turns = SharedSchedule(engine, "analytics_precount", settings.analytics.precount_interval_s)

    def round(self) -> RoundReport:
        """One pass over every part; a part that fails is logged and tried again next round,
        never stopping the others."""
        report = RoundReport()
        services = self.services
        analytics = services.settings.analytics
        if self.outbox:
            report.delivered = self._try(report, "applications",
                                         lambda: len(services.applications.deliver_due(self.name)), 0)
            report.refreshed = self._try(report, "application_status", services.applications.refresh, 0)
        report.kb_jobs = self._try(report, "kb_jobs", lambda: services.kb_admin.run_due(self.name), 0)
        if self._try(report, "sla_sweep_turn", lambda: self.sweep_turns.my_turn(self.name), False):
            report.swept = self._try(report, "sla_sweep", lambda: len(services.escalation.sweep_breaches()), 0)
        if analytics.precount_days and self._try(report, "precount_turn",
                                                 lambda: self.count_turns.my_turn(self.name), False):
            report.counted_days = self._try(report, "analytics_precount",
                                            lambda: services.analytics.count_finished_days(analytics.precount_days), 0)
        return report

    def _try(self, report: RoundReport, part: str, run: Callable[[], T], otherwise: T) -> T:
        try:
            return run()
        except Exception:  # logged and retried next round; one part never stops the others
            log.exception("background work %s failed in %s", part, self.name)
            report.failed.append(part)
            return otherwise
