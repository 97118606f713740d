"""Indexing speed and query latency of every search backend on the same generated library.

Run from the repository root::

    .venv/bin/python benchmarks/bench_search.py [--videos 100] [--cues 1000]

The library is ``--videos`` lectures of ``--cues`` cues each (100,000 cues by default), Korean
and English sentences built from a fixed vocabulary with a fixed seed. Each backend gets a
fresh store: a SQLite file in a temporary folder, a scratch PostgreSQL database at
``127.0.0.1:5432`` (created and dropped; skipped when it does not answer) and an osmem-server
process. Printed per backend: cues indexed per second, and p50/p95 latency of 200 fixed
queries (single Korean syllable pairs, partial Korean words, English words and two-word
queries); then each figure as a ratio of SQLite's, and p50/p95 per kind of query (Korean
syllable pairs, which are too short for a trigram index, partial Korean words, English words
and two-word queries).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from pipeline.db.engine import open_database
from pipeline.db.migrate import upgrade
from pipeline.search.base import CueDocument, SearchBackend, VideoDocument
from pipeline.search.database import DatabaseSearch
from pipeline.search.opensearch import OpenSearchBackend
from pipeline.settings import Settings
from tests import services
from tests.opensearch_server import OsmemProcess

KOREAN = [
    "고유값",
    "고유벡터",
    "행렬식",
    "선형대수",
    "미분방정식",
    "적분",
    "극한",
    "확률",
    "분산",
    "기댓값",
    "집합",
    "함수",
]
KOREAN_ENDINGS = ["을 배웁니다", "과 함께 봅니다", "의 정의입니다", "를 계산합니다", "은 중요합니다"]
ENGLISH = ["eigenvalue", "matrix", "determinant", "integral", "derivative", "probability", "variance", "vector"]
ENGLISH_FRAMES = ["we compute the {}", "the {} of a symmetric matrix", "recall that every {} is real", "{}s explained"]
QUERIES = ["고유", "행렬", "벡터", "고유값", "미분", "eigen", "matrix", "determinants", "vector 고유값", "probability"]

Library = list[tuple[VideoDocument, list[CueDocument]]]


@dataclass
class Figures:
    name: str
    cues_per_second: float
    index_seconds: float
    p50_ms: float
    p95_ms: float
    per_kind: dict[str, list[float]]
    """Latencies in milliseconds by :func:`kind` of query."""


def library(videos: int, cues_per_video: int) -> Library:
    """A fixed, seeded library of lectures mixing Korean and English cues."""
    chance = random.Random(20261203)
    cue_id = 1
    built = []
    for n in range(videos):
        video = VideoDocument(
            id=uuid.UUID(int=chance.getrandbits(128)),
            title=f"{chance.choice(KOREAN)} {chance.choice(ENGLISH)} lecture {n}",
            description=f"Week {n % 14} of {chance.choice(ENGLISH)}s",
            language=chance.choice(["ko", "en"]),
            owner_id=None,
            status="ready",
            duration=3600.0,
        )
        track = uuid.UUID(int=chance.getrandbits(128))
        cues = []
        for i in range(cues_per_video):
            if i % 2:
                text = chance.choice(ENGLISH_FRAMES).format(chance.choice(ENGLISH))
            else:
                text = f"오늘은 {chance.choice(KOREAN)}{chance.choice(KOREAN_ENDINGS)}"
            cues.append(
                CueDocument(
                    id=cue_id, track_id=track, language=video.language, start=i * 3.0, end=i * 3.0 + 2.5, text=text
                )
            )
            cue_id += 1
        built.append((video, cues))
    return built


def kind(query: str) -> str:
    """The kind of a benchmark query, for the per-kind figures."""
    words = query.split()
    if len(words) > 1:
        return "two words"
    if words[0].isascii():
        return "English word"
    return "Korean syllable pair" if len(words[0]) < 3 else "partial Korean word"


def queries() -> list[str]:
    """200 queries: the fixed list, each with and without a second word, cycled."""
    expanded = QUERIES + [f"{query} {other}" for query in QUERIES for other in ("lecture", "오늘은")]
    return [expanded[n % len(expanded)] for n in range(200)]


async def measure(name: str, search: SearchBackend, documents: Library) -> Figures:
    cue_count = sum(len(cues) for _, cues in documents)
    started = time.perf_counter()
    for video, cues in documents:
        await search.index_video(video, cues)
    index_seconds = time.perf_counter() - started
    return await query_latency(name, search, cue_count / index_seconds, index_seconds)


async def query_latency(name: str, search: SearchBackend, cues_per_second: float, index_seconds: float) -> Figures:
    await search.search("warm up")
    latencies = []
    per_kind: dict[str, list[float]] = {}
    for query in queries():
        begun = time.perf_counter()
        await search.search(query)
        latency = (time.perf_counter() - begun) * 1000
        latencies.append(latency)
        per_kind.setdefault(kind(query), []).append(latency)
    return Figures(
        name=name,
        cues_per_second=cues_per_second,
        index_seconds=index_seconds,
        p50_ms=statistics.median(latencies),
        p95_ms=p95(latencies),
        per_kind=per_kind,
    )


def p95(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[max(int(len(ordered) * 0.95) - 1, 0)]


@asynccontextmanager
async def database_search(url: str, data_dir: str) -> AsyncIterator[SearchBackend]:
    upgrade(url)
    database = open_database(Settings.from_env({"VIDPIPE_DATA_DIR": data_dir, "VIDPIPE_DATABASE_URL": url}))
    try:
        yield DatabaseSearch(database)
    finally:
        await database.dispose()


async def run_sqlite(documents: Library, folder: str) -> Figures:
    async with database_search(f"sqlite+aiosqlite:///{folder}/bench.db", folder) as search:
        return await measure("sqlite", search, documents)


async def run_postgresql(documents: Library, folder: str) -> list[Figures] | None:
    if reason := services.postgres_available():
        print(f"PostgreSQL skipped: {reason}")
        return None
    name = f"vidpipe_bench_search_{os.getpid()}"
    services.create_database(name)
    try:
        async with database_search(services.pg_url(name), folder) as search:
            fresh = await measure("postgresql", search, documents)
            # Right after a bulk load the planner has no statistics and new GIN entries sit in
            # the pending list; autovacuum settles both in a running system, so measure that too.
            with psycopg.connect(services.pg_url(name, driver="postgresql"), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE search_cues")
                conn.execute("VACUUM ANALYZE search_videos")
                conn.execute("VACUUM ANALYZE search_words")
            settled = await query_latency("postgresql, vacuumed", search, fresh.cues_per_second, fresh.index_seconds)
            return [fresh, settled]
    finally:
        services.drop_database(name)


async def run_opensearch(documents: Library, _: str) -> Figures:
    server = OsmemProcess()
    server.start()
    search = OpenSearchBackend(server.url, index_prefix="bench", timeout=120)
    try:
        return await measure("opensearch (osmem)", search, documents)
    finally:
        await search.close()
        server.stop()


def report(figures: list[Figures], cues: int) -> None:
    baseline = figures[0]
    print(f"\n{cues:,} cues; 200 queries per backend")
    print(f"{'backend':<20} {'cues/s':>10} {'index s':>9} {'p50 ms':>8} {'p95 ms':>8} {'cues/s ×':>9} {'p95 ×':>7}")
    for row in figures:
        print(
            f"{row.name:<20} {row.cues_per_second:>10,.0f} {row.index_seconds:>9.1f} {row.p50_ms:>8.1f} "
            f"{row.p95_ms:>8.1f} {row.cues_per_second / baseline.cues_per_second:>9.2f} "
            f"{row.p95_ms / baseline.p95_ms:>7.2f}"
        )
    print(f"\n{'backend':<20} {'query kind':<22} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for row in figures:
        for name, latencies in row.per_kind.items():
            print(
                f"{row.name:<20} {name:<22} {len(latencies):>7} {statistics.median(latencies):>8.1f} "
                f"{p95(latencies):>8.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--cues", type=int, default=1000, help="cues per video")
    parser.add_argument("--only", choices=["sqlite", "postgresql", "opensearch"], action="append")
    arguments = parser.parse_args()
    documents = library(arguments.videos, arguments.cues)
    runners: dict[str, Callable[[Library, str], Coroutine[Any, Any, Figures | list[Figures] | None]]] = {
        "sqlite": run_sqlite,
        "postgresql": run_postgresql,
        "opensearch": run_opensearch,
    }
    figures: list[Figures] = []
    for name, runner in runners.items():
        if arguments.only and name not in arguments.only:
            continue
        with tempfile.TemporaryDirectory() as folder:
            result = asyncio.run(runner(documents, folder))
        for row in [] if result is None else result if isinstance(result, list) else [result]:
            print(f"{row.name}: {row.cues_per_second:,.0f} cues/s, p95 {row.p95_ms:.1f} ms", flush=True)
            figures.append(row)
    report(figures, sum(len(cues) for _, cues in documents))


if __name__ == "__main__":
    main()
