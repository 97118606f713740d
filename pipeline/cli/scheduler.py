"""``vidpipe scheduler``: the periodic work — the reconciler and the drop-folder scanner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable
from typing import Any

import click

from pipeline.cli.app import load_settings, open_pipeline, open_runtime
from pipeline.reconciler import reconcile
from pipeline.runtime import Runtime

logger = logging.getLogger(__name__)


@click.command()
@click.option("--reconcile-every", type=float, default=15.0, show_default=True, help="Seconds between passes.")
@click.option("--scan-every", type=float, default=10.0, show_default=True, help="Seconds between drop scans.")
@click.option("--once", is_flag=True, help="Run one pass of each and exit.")
def scheduler(reconcile_every: float, scan_every: float, once: bool) -> None:
    """Re-send lost work and take new files from the drop folder, periodically."""
    logging.getLogger("pipeline").setLevel(logging.INFO)
    settings = load_settings()
    with open_pipeline(settings, start_workers=settings.broker_url == "memory://") as pipeline:

        async def go() -> None:
            async with open_runtime(pipeline) as runtime:
                await run_periodically(runtime, reconcile_every, scan_every, once=once)

        asyncio.run(go())


async def run_periodically(
    runtime: Runtime, reconcile_every: float, scan_every: float, *, once: bool, stop: asyncio.Event | None = None
) -> None:
    """The scheduler's loop; without ``stop`` it installs its own SIGTERM/SIGINT handlers."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    scanner = _scanner(runtime)
    next_reconcile = next_scan = time.monotonic()
    logger.info(
        "Scheduler started: reconciling every %.0f s, scanning the drop folder every %.0f s.",
        reconcile_every,
        scan_every,
    )
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_reconcile:
            await _guarded("reconcile", reconcile(runtime))
            next_reconcile = now + reconcile_every
        if scanner is not None and now >= next_scan:
            await _guarded("drop-folder scan", scanner.scan_once())
            next_scan = now + scan_every
        if once:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.05, min(next_reconcile, next_scan) - time.monotonic()))
    logger.info("Scheduler stopped.")


async def _guarded(what: str, work: Awaitable[object]) -> None:
    """One failed pass (the database restarting, say) is logged; the next pass tries again."""
    try:
        await work
    except Exception:
        logger.exception("The scheduler's %s pass failed; it runs again at the next period.", what)


def _scanner(runtime: Runtime) -> Any:
    try:
        from pipeline.dropfolder import DropScanner
    except ImportError:  # the drop-folder scanner is optional for the scheduler to start
        return None
    return DropScanner.from_runtime(runtime)
