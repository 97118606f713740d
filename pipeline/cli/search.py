"""``vidpipe search``: find videos, suggest titles, and set up or rebuild the search index.

``vidpipe search QUERY`` searches, as it always has; ``init``, ``reindex`` and ``suggest``
are subcommands. A first word that names no subcommand is taken as the query, so to search
for one of those words use ``vidpipe search query WORD``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from pipeline.cli.app import load_settings, open_pipeline, open_runtime, user_errors
from pipeline.runtime import Runtime

T = TypeVar("T")

_QUERY_COMMAND = "query"
_VALUE_OPTIONS = frozenset({"--language", "--page", "--per-page"})
"""Options of the query command that take a value, so the value is not mistaken for the query."""


class _QueryOrCommand(click.Group):
    """A group whose unknown first word starts a search instead of failing as an unknown command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not set(args) <= {"--help", "-h"} and _first_word(args) not in self.commands:
            args = [_QUERY_COMMAND, *args]
        return super().parse_args(ctx, args)


def _first_word(args: list[str]) -> str | None:
    """The first argument that is not an option or an option's value."""
    skip = False
    for position, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == "--":
            return args[position + 1] if position + 1 < len(args) else None
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-") or arg == "-":
            return arg
    return None


def _run(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``work`` with a runtime on a fresh event loop, turning vidpipe's errors into one line."""
    settings = load_settings()
    with open_pipeline(settings, start_workers=False) as pipeline:

        async def go() -> T:
            async with open_runtime(pipeline) as runtime:
                with user_errors():
                    return await work(runtime)

        return asyncio.run(go())


@click.group(cls=_QueryOrCommand, invoke_without_command=False)
def search() -> None:
    """Find videos and the moments their subtitles say QUERY; set up and rebuild the index."""


@search.command(_QUERY_COMMAND)
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--language", help="Only videos or cues in this language.")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--per-page", type=int, default=20, show_default=True)
def query_command(query: str, as_json: bool, language: str | None, page: int, per_page: int) -> None:
    """Find videos and the moments their subtitles say QUERY (also: vidpipe search QUERY)."""
    from pipeline.search.base import SearchFilters

    async def work(runtime: Runtime) -> dict[str, Any]:
        filters = SearchFilters(language=language)
        result = await runtime.search.search(query, filters=filters, page=page, per_page=per_page)
        return result.to_json()

    result = _run(work)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    click.echo(f"{result['total']} videos")
    for hit in result["hits"]:
        click.echo(f"{hit['video']['title']}  ({hit['video']['id']}, score {hit['score']:.3f})")
        for cue in hit["cues"]:
            click.echo(f"  {cue['start']:8.2f}s  {cue['text']}")


@search.command()
@click.argument("prefix")
@click.option("--json", "as_json", is_flag=True, help="Print the suggestions as JSON.")
@click.option("--limit", type=int, default=10, show_default=True)
def suggest(prefix: str, as_json: bool, limit: int) -> None:
    """Suggest titles of ready videos with a word starting with PREFIX."""

    async def work(runtime: Runtime) -> list[dict[str, str]]:
        found = await runtime.search.suggest(prefix, limit=limit)
        return [{"text": suggestion.text, "video_id": str(suggestion.video_id)} for suggestion in found]

    suggestions = _run(work)
    if as_json:
        click.echo(json.dumps({"suggestions": suggestions}, ensure_ascii=False, indent=2))
        return
    for suggestion in suggestions:
        click.echo(f"{suggestion['text']}  ({suggestion['video_id']})")


@search.command()
def init() -> None:
    """Create the search index and its alias (OpenSearch), or check the search tables (database)."""
    from pipeline.search.maintenance import init_search

    async def work(runtime: Runtime) -> str:
        return await init_search(runtime.search)

    click.echo(_run(work))


@search.command()
@click.argument("video_id", required=False, type=click.UUID)
@click.option("--all", "everything", is_flag=True, help="Rebuild the whole index from the database.")
def reindex(video_id: uuid.UUID | None, everything: bool) -> None:
    """Send VIDEO_ID to the search backend again, or rebuild everything with --all.

    With OpenSearch, --all fills a new versioned index and then swaps the alias, so searches
    keep answering from the old index until the new one is complete.
    """
    from pipeline.search.maintenance import ReindexReport, reindex_all, reindex_video

    if everything == (video_id is not None):
        raise click.UsageError("Give either a VIDEO_ID or --all.")

    async def work(runtime: Runtime) -> ReindexReport:
        if video_id is not None:
            return await reindex_video(runtime.search, runtime.database, video_id)
        return await reindex_all(runtime.search, runtime.database)

    report = _run(work)
    where = f" into {report.index}, which the alias now points at" if report.index else ""
    click.echo(f"Re-indexed {report.videos} videos{where}.")
    for failed in report.failed:
        click.echo(f"  refused by the search backend: {failed}", err=True)
    if report.failed:
        raise SystemExit(1)
