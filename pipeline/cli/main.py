"""``vidpipe``: process videos, check subtitle files, search, and run the demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli.app import configure_logging, load_settings, open_pipeline, open_runtime, user_errors
from pipeline.cli.progress import wait_for_job
from pipeline.dispatch import NOTIFICATIONS_QUEUE, queue_name
from pipeline.errors import SubtitleError
from pipeline.reports import full_job_report
from pipeline.states import JobStatus, Stage
from pipeline.submit import SubtitleFile, submit_file


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what the pipeline does, to standard error.")
@click.version_option(package_name="vidpipe")
def cli(verbose: bool) -> None:
    """vidpipe: an asynchronous media pipeline for lecture videos."""
    configure_logging(verbose)


def parse_subtitle_option(value: str) -> SubtitleFile:
    """``FILE`` or ``FILE:LANG``; a colon belongs to the path when the whole value is a file."""
    path, sep, language = value.rpartition(":")
    if sep and language and not Path(value).exists() and len(language) <= 35 and "/" not in language:
        return SubtitleFile(path=Path(path), language=language)
    return SubtitleFile(path=Path(value))


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--subtitles",
    "subtitle_files",
    multiple=True,
    metavar="FILE[:LANG]",
    help="A subtitle file (VTT, SRT, SBV) to attach; repeatable.",
)
@click.option("--title", help="The video's title (default: the file name).")
@click.option("--description", default="", help="The video's description.")
@click.option("--language", help="The video's spoken language, e.g. ko or en.")
@click.option("--poster-at", type=float, metavar="SECONDS", help="Where to take the poster frame.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result.")
@click.option("--no-wait", is_flag=True, help="Print the job id and return without waiting.")
@click.option("--timeout", type=float, default=None, help="Stop waiting after this many seconds.")
def process(
    path: Path,
    subtitle_files: tuple[str, ...],
    title: str | None,
    description: str,
    language: str | None,
    poster_at: float | None,
    as_json: bool,
    no_wait: bool,
    timeout: float | None,
) -> None:
    """Run one video through the pipeline and wait for the result."""
    settings = load_settings()
    subtitles = [parse_subtitle_option(value) for value in subtitle_files]
    with open_pipeline(settings) as pipeline:
        if no_wait and pipeline.in_process:
            raise click.ClickException(
                "--no-wait needs a Redis broker: with memory:// the work runs inside this command."
            )

        async def go() -> dict[str, Any]:
            async with open_runtime(pipeline) as runtime:
                with user_errors():
                    submitted = await submit_file(
                        runtime,
                        path.absolute(),
                        title=title,
                        description=description,
                        language=language,
                        subtitles=subtitles,
                        poster_at=poster_at,
                    )
                if no_wait:
                    return {"job": {"id": str(submitted.job_id), "status": "queued"}}
                await wait_for_job(runtime, submitted.job_id, show=not as_json, timeout=timeout)
                async with runtime.database.sessions() as session:
                    return await full_job_report(session, submitted.job_id)

        report = asyncio.run(go())
    _print_report(report, as_json=as_json)
    sys.exit(0 if report["job"]["status"] in (JobStatus.SUCCEEDED, JobStatus.QUEUED) else 1)


def _print_report(report: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    job, video = report["job"], report.get("video", {})
    click.echo(f"job {job['id']}: {job['status']}")
    if not video:
        return
    if video.get("duration"):
        click.echo(
            f"video {video['id']}: {video['duration']:.2f} s, {video['width']}x{video['height']}, "
            f"{video['video_codec']}/{video['audio_codec'] or 'no audio'}"
        )
    for stage in report["stages"]:
        line = f"  {stage['name']:<11} {stage['status']:<10} attempts {stage['attempts']}"
        if stage["error_code"]:
            line += f"  [{stage['error_code']}] {stage['error_message']}"
        click.echo(line)
    for track in report["subtitle_tracks"]:
        line = (
            f"  subtitles {track['language'] or '?':<6} {track['source']:<8} {track['status']:<7} {track['cues']} cues"
        )
        if track["error_code"]:
            line += f"  [{track['error_code']}] {track['error_message']}"
        click.echo(line)


@cli.group()
def subtitles() -> None:
    """Work with subtitle files."""


@subtitles.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def subtitles_check(file: Path, as_json: bool) -> None:
    """Parse FILE as the pipeline would and show its cues and warnings."""
    from pipeline.subtitles import language_from_filename, parse_subtitles

    try:
        document = parse_subtitles(file.read_bytes(), filename=file.name)
    except SubtitleError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": {"code": exc.code, "message": exc.message}}))
        else:
            click.echo(f"{file.name}: not usable: {exc.message}", err=True)
        sys.exit(1)
    result = {
        "ok": True,
        "format": document.format,
        "encoding": document.encoding,
        "language": language_from_filename(file.name),
        "cues": [{"start": c.start, "end": c.end, "text": c.plain_text} for c in document.cues],
        "warnings": list(document.warnings),
    }
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"{file.name}: {document.format}, {document.encoding}, {len(document.cues)} cues, "
        f"{len(document.warnings)} warnings"
    )
    for cue in document.cues:
        click.echo(f"  {cue.start:9.3f} --> {cue.end:9.3f}  {cue.plain_text}")
    for warning in document.warnings:
        click.echo(f"  warning: {warning}")


@cli.command()
def migrate() -> None:
    """Bring the database schema up to date (the release step)."""
    from pipeline.db.migrate import upgrade

    settings = load_settings()
    with user_errors():
        upgrade(settings.database_url)
    click.echo("The database schema is up to date.")


@cli.command()
@click.option("--processes", type=int, default=None, help="Worker processes (default: one per core).")
@click.option("--threads", type=int, default=None, help="Threads per process.")
@click.option(
    "--queues",
    multiple=True,
    type=click.Choice([*(s.value for s in Stage), "notifications"]),
    help="Only these queues (repeatable): stages or notifications, so heavy and light work scale apart.",
)
def worker(processes: int | None, threads: int | None, queues: tuple[str, ...]) -> None:
    """Run Dramatiq workers on the broker from VIDPIPE_BROKER_URL."""
    settings = load_settings()
    if settings.broker_url == "memory://":
        raise click.ClickException(
            "vidpipe worker needs VIDPIPE_BROKER_URL=redis://…; with memory:// the work runs inside each command."
        )
    args = [sys.executable, "-m", "workers.entry"]
    if processes:
        args += ["--processes", str(processes)]
    if threads:
        args += ["--threads", str(threads)]
    if queues:
        args += ["--queues", *(NOTIFICATIONS_QUEUE if q == "notifications" else queue_name(Stage(q)) for q in queues)]
    os.environ.setdefault("dramatiq_worker_timeout", "100")
    os.execv(sys.executable, args)


@cli.command()
def demo() -> None:
    """Generate a short lecture with Korean and English subtitles, process it and search it."""
    from pipeline.demo import run_demo

    run_demo()


from pipeline.cli.jobs import jobs  # noqa: E402
from pipeline.cli.scheduler import scheduler  # noqa: E402
from pipeline.cli.search import search  # noqa: E402
from pipeline.cli.serve import api  # noqa: E402

cli.add_command(jobs)
cli.add_command(scheduler)
cli.add_command(search)
cli.add_command(api)

from pipeline.cli.ingest import ingest  # noqa: E402

cli.add_command(ingest)

from pipeline.cli.users import users  # noqa: E402

cli.add_command(users)


def main() -> None:
    """The console script: vidpipe's own errors print one line; anything else is logged, not dumped."""
    try:
        cli(prog_name="vidpipe", standalone_mode=True)
    except Exception as exc:  # a bug or an unexpected service failure: keep tracebacks in the log
        logging.getLogger("pipeline.cli").debug("The command failed unexpectedly.", exc_info=True)
        click.echo(
            f"Error: vidpipe stopped on an unexpected {type(exc).__name__}: {exc}. "
            "Run with -v to see the details in the log.",
            err=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
