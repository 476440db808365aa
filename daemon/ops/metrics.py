"""``/metrics``: the facts in the Prometheus text format, computed when scraped.

A custom collector rather than long-lived metric objects: the numbers live where they are kept
(the spool folders, the database, the worker's counts file, serve's intake and pollers), so a
scrape reads them instead of keeping a second copy in step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from postdesk.daemon.config import Settings
from postdesk.daemon.intake.spool import Spool
from postdesk.daemon.ops.counters import BUCKETS, read_counts
from postdesk.daemon.ops.facts import database_facts, spool_facts

log = logging.getLogger("postdesk.ops")


@dataclass(frozen=True)
class LiveSources:
    """What only the running serve knows: intake and poller counts, the worker's liveness."""

    received: Callable[[], dict[str, int]]  # channel -> messages spooled since start
    imap_errors: Callable[[], dict[str, int]]  # mailbox -> failed polls since start
    worker_alive: Callable[[], bool]
    serve_pid: int


class PostdeskCollector(Collector):
    """Collects every postdesk metric at scrape time."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        spool: Spool,
        live: LiveSources,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.spool = spool
        self.live = live

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families (blocking: call from a thread)."""
        received = CounterMetricFamily(
            "postdesk_messages_received", "Messages accepted into the spool", labels=["channel"]
        )
        for channel, count in sorted(self.live.received().items()):
            received.add_metric([channel], count)
        yield received
        yield from self._worker()
        yield from self._spool()
        yield from self._database()
        errors = CounterMetricFamily(
            "postdesk_imap_poll_errors", "Failed IMAP polls per mailbox", labels=["mailbox"]
        )
        for mailbox, count in sorted(self.live.imap_errors().items()):
            errors.add_metric([mailbox], count)
        yield errors
        yield _gauge(
            "postdesk_worker_alive", "1 while the worker process runs", self.live.worker_alive()
        )

    def _worker(self) -> Iterator[Metric]:
        counts = read_counts(self.settings.data_dir, self.live.serve_pid)
        processed = CounterMetricFamily(
            "postdesk_messages_processed", "Messages processed, by outcome", labels=["outcome"]
        )
        for outcome, count in sorted(counts.outcomes.items()):
            processed.add_metric([outcome], count)
        yield processed
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts.buckets, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        yield HistogramMetricFamily(
            "postdesk_processing_seconds",
            "Time to process one message, from claim to commit",
            buckets=buckets,
            sum_value=counts.seconds_sum,
        )

    def _spool(self) -> Iterator[Metric]:
        facts = spool_facts(self.settings, self.spool)
        yield _gauge("postdesk_spool_depth", "Messages waiting in the spool", facts.depth)
        yield _gauge(
            "postdesk_spool_oldest_age_seconds",
            "Age of the oldest message in the spool",
            facts.oldest_age_seconds,
        )
        yield _gauge(
            "postdesk_disk_free_bytes", "Free space on the spool's file system", facts.free_bytes
        )

    def _database(self) -> Iterator[Metric]:
        try:
            facts = database_facts(self.factory)
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as error:
            log.warning(
                "metrics: the database does not answer: %s", " ".join(str(error).split())[:200]
            )
            yield _gauge("postdesk_database_up", "1 when the database answered this scrape", 0)
            return
        yield _gauge("postdesk_database_up", "1 when the database answered this scrape", 1)
        yield _gauge("postdesk_outbox_depth", "Mails waiting to be sent", facts.outbox_pending)
        yield _gauge(
            "postdesk_outbox_retrying",
            "Mails waiting after a failed attempt",
            facts.outbox_retrying,
        )
        yield _gauge(
            "postdesk_outbox_send_failures",
            "Mails given up after the last attempt failed",
            facts.outbox_failed,
        )
        yield _gauge(
            "postdesk_quarantine_size", "Messages held in quarantine", facts.quarantine_held
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def registry_for(collector: PostdeskCollector) -> CollectorRegistry:
    """A registry holding only postdesk's collector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format (blocking)."""
    return generate_latest(registry)
