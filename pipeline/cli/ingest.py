"""``vidpipe ingest``: take videos from the drop location by hand.

``vidpipe scheduler`` runs the same scan periodically; this command is for operators who want
one pass now (``--once``) or a scanner of their own. With the in-process broker (``memory://``)
the jobs run inside this command, so each pass waits for the jobs it started before going on
or exiting; with Redis, workers elsewhere run them and the command returns at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import click

from pipeline.cli.app import Pipeline, load_settings, open_pipeline, open_runtime, user_errors
from pipeline.cli.progress import wait_for_job
from pipeline.dropfolder import DropScanner, ScanReport
from pipeline.runtime import Runtime

logger = logging.getLogger(__name__)


@click.group()
def ingest() -> None:
    """Take videos from the drop location (VIDPIPE_INGEST_URL)."""


@ingest.command("scan")
@click.option("--once", is_flag=True, help="Scan once and exit, instead of scanning every --interval seconds.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Pause between passes when scanning continuously.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per pass.")
def scan(once: bool, interval: float, as_json: bool) -> None:
    """Turn new files in the drop location into videos and jobs."""
    settings = load_settings()
    with open_pipeline(settings) as pipeline:
        try:
            asyncio.run(_scan(pipeline, once=once, interval=interval, as_json=as_json))
        except KeyboardInterrupt:
            click.echo("Stopped scanning.", err=True)


async def _scan(pipeline: Pipeline, *, once: bool, interval: float, as_json: bool) -> None:
    async with open_runtime(pipeline) as runtime:
        with user_errors():
            scanner = DropScanner.from_runtime(runtime)
        if not as_json:
            click.echo(f"Scanning {scanner.drops.description}.", err=True)
        while True:
            with user_errors():
                report = await scanner.scan_once()
            if pipeline.in_process:
                await _wait_for(runtime, report.jobs)
            _print(report, as_json=as_json)
            if once:
                return
            await asyncio.sleep(interval)


async def _wait_for(runtime: Runtime, jobs: list[uuid.UUID]) -> None:
    # The in-process workers die with this command, so its jobs must end before it does.
    for job_id in jobs:
        job = await wait_for_job(runtime, job_id, show=False)
        logger.info("Job %s from the drop location ended %s.", job_id, job.status)


def _print(report: ScanReport, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    click.echo(
        f"{report.new} new, {report.settling} settling, {report.submitted} submitted, "
        f"{report.duplicates} duplicates, {report.rejected} rejected, {report.errors} errors"
    )
    for job_id in report.jobs:
        click.echo(f"  job {job_id}")
