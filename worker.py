"""Runs the Temporal worker: the regime and buddy workflows and their activities."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

import logs
from activities.effects import EffectActivities
from infra import tracing
from infra.clients import connect_temporal
from infra.db import create_pool, database_url, migrate, migration_url
from infra.notify import OutboxNotifier
from settings import Settings, get_settings
from workflows import WORKFLOWS

log = logging.getLogger("worker")  # also when run as __main__


def activities_for(pool: asyncpg.Pool, audit_key: bytes | None = None) -> list:
    from activities.archive import ArchiveActivities
    from activities.calendar import CalendarActivities
    from activities.funding import FundingActivities
    from activities.payments import PaymentActivities

    effects = EffectActivities(pool, OutboxNotifier(), audit_key or get_settings().audit_key)
    payments = PaymentActivities(pool)
    return [effects.apply_effects, ArchiveActivities(pool).archive_state, CalendarActivities().bank_holidays,
            *payments.all(), FundingActivities(pool).record_drawdown]


def build_worker(client: Client, pool: asyncpg.Pool, task_queue: str, audit_key: bytes | None = None,
                 **kw) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities_for(pool, audit_key),
                  **kw)


async def main(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    # Signals first: one that arrives while the worker is still starting stops it cleanly too.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logs.configure(settings)  # LOG_FORMAT, LOG_LEVEL
    tracing.setup("special-measures-worker")  # on only with OTEL_EXPORTER_OTLP_ENDPOINT
    url = database_url(settings)
    await migrate(migration_url(settings, url), settings.database_schema, settings.database_service_role)
    pool = await create_pool(url, settings.database_schema, role=settings.database_service_role)
    # The SDK's own metrics (task latencies, polls, slots, cache) in the Prometheus format; the endpoint
    # answering is also the worker's liveness signal. The SDK core's logs join ours (logs.py).
    metrics = (PrometheusConfig(bind_address=settings.worker_metrics_address)
               if settings.worker_metrics_address else None)
    runtime = Runtime(telemetry=TelemetryConfig(logging=logs.temporal_core_logging(), metrics=metrics))
    client = await connect_temporal(settings.temporal_target, settings.temporal_namespace, attempts=50,
                                    runtime=runtime)
    worker = build_worker(client, pool, settings.temporal_task_queue, settings.audit_key,
                          max_cached_workflows=settings.worker_max_cached_workflows,
                          graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_seconds))
    log.info("worker polling task queue %s on %s", settings.temporal_task_queue, settings.temporal_target)
    relay = asyncio.create_task(relay_notifications(pool, settings)) if settings.smtp_host else None
    checkpoints = (asyncio.create_task(write_checkpoints_periodically(pool, settings))
                   if settings.audit_checkpoint_every_seconds else None)
    running = asyncio.create_task(worker.run())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            # The SDK's explicit shutdown: stop polling, let running activities finish (up to the graceful
            # timeout), then return; workflows in the cache are simply evicted (their state is in history).
            log.info("worker shutting down (signal); activities have %ss to finish",
                         settings.worker_graceful_shutdown_seconds)
            await worker.shutdown()
            log.info("worker stopped")
        await running
    finally:
        stopping.cancel()
        for task in (relay, checkpoints):
            if task:
                task.cancel()
        await pool.close()


async def write_checkpoints_periodically(pool: asyncpg.Pool, settings: Settings) -> None:
    """Sign every audit chain's head and export it (files and the outbox) now and then every interval."""
    from infra.checkpoints import write_checkpoints

    while True:
        try:
            written = await write_checkpoints(pool, settings)
            log.info("audit checkpoints: %d chains signed, %d broken", sum(c["intact"] for c in written),
                         sum(not c["intact"] for c in written))
        except Exception:
            log.exception("audit checkpoints failed; will retry")
        await asyncio.sleep(settings.audit_checkpoint_every_seconds)


async def relay_notifications(pool: asyncpg.Pool, settings: Settings, every: float = 10.0) -> None:
    """Drain the notification outbox to SMTP; a failed send stays unsent and is tried again."""
    from infra.notify import SmtpRelay

    relay = SmtpRelay(pool, settings.smtp_host or "", settings.smtp_port, settings.smtp_from)
    while True:
        try:
            await relay.drain_once()
        except Exception:
            log.exception("notification relay failed; will retry")
        await asyncio.sleep(every)


def exit_after_clean_shutdown() -> None:
    """End the process without the interpreter's finalization, once everything is shut down and flushed.

    The SDK core (Rust) keeps threads of its own, one of which forwards its logs to ours (logs.py); if one of them
    touches Python while the interpreter is finalizing, CPython aborts with "Fatal Python error: PyGILState_Release"
    (temporalio/sdk-python#300), which turned a clean Ctrl-C into a crash now and then. There is nothing left to
    finalize that matters: the worker has shut down, the pool is closed, and the logs are flushed here."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())  # SIGINT and SIGTERM shut the worker down cleanly (main)
    exit_after_clean_shutdown()
