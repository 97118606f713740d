"""The search contract, run against every backend: SQLite, PostgreSQL and OpenSearch.

Each SQLite test gets a fresh, migrated file; PostgreSQL tests share one scratch database
(created and migrated once per module, dropped afterwards) whose search tables are emptied
before every test; OpenSearch tests share one server (osmem-server, or the cluster named by
``VIDPIPE_TEST_OPENSEARCH_URL``) with an index prefix per test. A service that does not
answer skips its tests, unless ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Uuid, column, create_engine, insert, inspect, select, table
from sqlalchemy import text as sql_text

from pipeline.db.engine import open_database
from pipeline.db.migrate import alembic_config, sync_url, upgrade
from pipeline.db.models import Base
from pipeline.errors import InvalidInput, SearchUnavailable
from pipeline.search import open_search
from pipeline.search.base import CueDocument, SearchBackend, SearchFilters, SearchResult, VideoDocument
from pipeline.search.database import DatabaseSearch, search_cues, search_words
from pipeline.search.opensearch import OpenSearchBackend
from pipeline.settings import Settings
from tests import services

T = TypeVar("T")
Scenario = Callable[[SearchBackend], Awaitable[T]]

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_cue_ids = itertools.count(1)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    name = f"vidpipe_search_test_{os.getpid()}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at 127.0.0.1:5432 did not answer, so its search tests cannot run: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql", "opensearch"])
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database of the backend; OpenSearch gets a SQLite file it never uses."""
    if backend_name in ("sqlite", "opensearch"):
        sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'vidpipe.db'}"
        upgrade(sqlite_url)
        return sqlite_url
    url: str = request.getfixturevalue("postgres_url")
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("TRUNCATE search_videos, search_cues, search_words")
    return url


@pytest.fixture
def search_env(backend_name: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The search settings of the backend under test."""
    if backend_name != "opensearch":
        return {}
    url: str = request.getfixturevalue("opensearch_url")
    prefix: str = request.getfixturevalue("opensearch_prefix")
    return {"VIDPIPE_SEARCH_URL": url, "VIDPIPE_SEARCH_INDEX_PREFIX": prefix}


@pytest.fixture
def run(database_url: str, search_env: dict[str, str], tmp_path: Path) -> Callable[[Scenario[Any]], Any]:
    """Run an async scenario against a fresh backend on its own event loop."""

    def runner(scenario: Scenario[T]) -> T:
        return asyncio.run(_with_backend(_settings(tmp_path, database_url, **search_env), scenario))

    return runner


async def _with_backend(settings: Settings, scenario: Scenario[T]) -> T:
    database = open_database(settings)
    search = open_search(settings, database)
    try:
        return await scenario(search)
    finally:
        await search.close()
        await database.dispose()


def _settings(tmp_path: Path, url: str, **extra: str) -> Settings:
    environ = {"VIDPIPE_DATA_DIR": str(tmp_path), "VIDPIPE_DATABASE_URL": url, **extra}
    return Settings.from_env(environ)


# --- documents ------------------------------------------------------------------------------


def video(
    title: str = "Lecture",
    *,
    description: str = "",
    language: str | None = "ko",
    owner_id: uuid.UUID | None = None,
    status: str = "ready",
    duration: float | None = 600.0,
) -> VideoDocument:
    return VideoDocument(
        id=uuid.uuid4(),
        title=title,
        description=description,
        language=language,
        owner_id=owner_id,
        status=status,
        duration=duration,
    )


def cues(*texts: str, language: str | None = "ko", start: float = 0.0) -> list[CueDocument]:
    """One track's cues, five seconds apart from ``start``."""
    track = uuid.uuid4()
    return [
        CueDocument(
            id=next(_cue_ids),
            track_id=track,
            language=language,
            start=start + 5 * i,
            end=start + 5 * i + 4,
            text=text,
        )
        for i, text in enumerate(texts)
    ]


def ids(result: SearchResult) -> list[uuid.UUID]:
    return [hit.video_id for hit in result.hits]


# --- matching -------------------------------------------------------------------------------


def test_a_video_is_found_only_once_it_is_indexed(run: Callable[[Scenario[Any]], Any]) -> None:
    lecture = video("선형대수")

    async def scenario(search: SearchBackend) -> tuple[SearchResult, SearchResult]:
        before = await search.search("선형대수")
        await search.index_video(lecture, cues("행렬"))
        return before, await search.search("선형대수")

    before, after = run(scenario)
    assert before.total == 0 and before.hits == []
    assert ids(after) == [lecture.id]


@pytest.mark.parametrize("query", ["고유값", "벡터", "고유", "고유값 벡터"])
def test_korean_queries_match_part_of_a_word(run: Callable[[Scenario[Any]], Any], query: str) -> None:
    lecture = video("선형대수 5강")

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(lecture, cues("오늘은 행렬식을 봅니다", "고유값과 고유벡터를 배웁니다"))
        return await search.search(query)

    result = run(scenario)
    assert ids(result) == [lecture.id]
    assert [cue.text for cue in result.hits[0].cues] == ["고유값과 고유벡터를 배웁니다"]


@pytest.mark.parametrize("query", ["eigenvalue", "EIGENVALUE", "Eigenvalues", "eigen", "EigenVectors"])
def test_english_queries_match_case_insensitively_and_across_word_forms(
    run: Callable[[Scenario[Any]], Any], query: str
) -> None:
    lecture = video("Linear algebra", language="en")

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(lecture, cues("Eigenvalues and eigenvectors", "a determinant", language="en"))
        return await search.search(query)

    result = run(scenario)
    assert ids(result) == [lecture.id]
    assert [cue.start for cue in result.hits[0].cues] == [0.0]


def test_a_plural_query_finds_the_singular_word(run: Callable[[Scenario[Any]], Any]) -> None:
    lecture = video("Spectra", language="en")

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(lecture, cues("Every eigenvalue of a symmetric matrix is real", language="en"))
        return await search.search("Eigenvalues symmetries")

    result = run(scenario)
    assert ids(result) == [lecture.id]
    assert result.hits[0].cues[0].highlight == (
        "Every <mark>eigenvalue</mark> of a <mark>symmetric</mark> matrix is real"
    )


def test_one_syllable_finds_the_cues_whose_words_contain_it(run: Callable[[Scenario[Any]], Any]) -> None:
    found = video("Week 1")
    other = video("Week 2")

    async def scenario(search: SearchBackend) -> tuple[SearchResult, SearchResult]:
        await search.index_video(found, cues("오늘은 행렬식을 봅니다", "고유값과 고유벡터를 배웁니다"))
        await search.index_video(other, cues("오늘은 행렬식을 봅니다"))
        return await search.search("값"), await search.search("벡")

    syllable, another = run(scenario)
    assert ids(syllable) == [found.id] and ids(another) == [found.id]
    assert [cue.highlight for cue in syllable.hits[0].cues] == ["고유<mark>값</mark>과 고유벡터를 배웁니다"]


def test_the_cue_holding_every_word_comes_first_even_late_in_a_long_lecture(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    lecture = video("Week 9")
    texts = [f"행렬의 곱 {n}" for n in range(40)] + ["행렬과 고유값", "고유값 하나"]

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(lecture, cues(*texts))
        return await search.search("행렬 고유값", cues_per_video=2)

    result = run(scenario)
    assert ids(result) == [lecture.id]
    best = result.hits[0].cues[0]
    assert (best.text, best.start) == ("행렬과 고유값", 200.0)


def test_every_word_of_a_query_must_match_in_the_title_description_or_cues(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    split = video("Linear algebra")
    one_cue = video("Week 3")
    described = video("Week 4", description="Linear maps, explained slowly")
    title_only = video("Linear models")
    cue_only = video("Calculus")

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(split, cues("the eigenvalue problem"))
        await search.index_video(one_cue, cues("linear maps have an eigenvalue"))
        await search.index_video(described, cues("each eigenvalue"))
        await search.index_video(title_only, cues("regression"))
        await search.index_video(cue_only, cues("no eigenvalue here"))
        return await search.search("linear eigenvalue")

    result = run(scenario)
    assert set(ids(result)) == {split.id, one_cue.id, described.id}
    assert result.total == 3


def test_highlights_mark_every_match_and_escape_the_rest(run: Callable[[Scenario[Any]], Any]) -> None:
    lecture = video("Markup")

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(lecture, cues('<b>Matrix</b> & "matrix" 행렬 submatrix'))
        return await search.search("matrix 행렬")

    highlight = run(scenario).hits[0].cues[0].highlight
    assert highlight == (
        "&lt;b&gt;<mark>Matrix</mark>&lt;/b&gt; &amp; &quot;<mark>matrix</mark>&quot; "
        "<mark>행렬</mark> sub<mark>matrix</mark>"
    )


def test_like_wildcards_in_a_query_match_only_themselves(run: Callable[[Scenario[Any]], Any]) -> None:
    percent = video("Sale")
    underscore = video("Names")
    backslash = video("Paths")

    async def scenario(search: SearchBackend) -> list[list[uuid.UUID]]:
        await search.index_video(percent, cues("50% off"))
        await search.index_video(underscore, cues("snake_case names"))
        await search.index_video(backslash, cues(r"C:\temp"))
        return [ids(await search.search(query)) for query in ("%", "50%", "_", "e_c", "\\", ":\\t")]

    assert run(scenario) == [
        [percent.id],
        [percent.id],
        [underscore.id],
        [underscore.id],
        [backslash.id],
        [backslash.id],
    ]


# --- ranking and cues -----------------------------------------------------------------------


def test_a_title_match_ranks_above_videos_that_match_only_in_cues(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    titled = video("Eigenvalues explained")
    many_cues = video("Week 7")

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(many_cues, cues(*["the eigenvalue again"] * 6))
        await search.index_video(titled, cues("hello"))
        return await search.search("eigenvalue")

    result = run(scenario)
    assert ids(result) == [titled.id, many_cues.id]
    assert result.hits[0].score > result.hits[1].score


def test_more_matching_cues_rank_a_video_higher(run: Callable[[Scenario[Any]], Any]) -> None:
    once = video("Week 1")
    thrice = video("Week 2")

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(once, cues("행렬", "다른 이야기"))
        await search.index_video(thrice, cues("행렬", "행렬의 곱", "행렬식"))
        return await search.search("행렬")

    assert ids(run(scenario)) == [thrice.id, once.id]


def test_cues_are_ordered_by_how_many_words_they_match_then_by_start(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    lecture = video("Spectral theory")
    texts = ("eigenvector basis", "unrelated", "eigenvalue only", "eigenvalue and eigenvector", "eigenvalue")

    async def scenario(search: SearchBackend) -> tuple[SearchResult, SearchResult, SearchResult]:
        await search.index_video(lecture, cues(*texts))
        return (
            await search.search("eigenvalue eigenvector", cues_per_video=3),
            await search.search("eigenvalue eigenvector", cues_per_video=10),
            await search.search("eigenvalue eigenvector", cues_per_video=0),
        )

    three, all_cues, none = run(scenario)
    assert [cue.start for cue in three.hits[0].cues] == [15.0, 0.0, 10.0]
    assert [cue.start for cue in all_cues.hits[0].cues] == [15.0, 0.0, 10.0, 20.0]
    assert none.hits[0].cues == []
    assert all_cues.hits[0].cues[0].end == 19.0


def test_pages_do_not_overlap_and_total_counts_videos_not_cues(run: Callable[[Scenario[Any]], Any]) -> None:
    lectures = [video(f"Algebra part {n}") for n in range(7)]

    async def scenario(search: SearchBackend) -> list[SearchResult]:
        for lecture in lectures:
            await search.index_video(lecture, cues("algebra again", "more algebra"))
        return [await search.search("algebra", page=page, per_page=3) for page in (1, 2, 3, 4)]

    pages = run(scenario)
    assert [result.total for result in pages] == [7, 7, 7, 7]
    assert [len(result.hits) for result in pages] == [3, 3, 1, 0]
    found = [video_id for result in pages for video_id in ids(result)]
    assert found == sorted(lecture.id for lecture in lectures)


# --- filters --------------------------------------------------------------------------------


def test_language_filter_matches_the_video_language_or_a_track_language(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    korean = video("행렬 1", language="ko")
    english = video("Matrix 2", language="en")
    mixed = video("행렬 3", language="ko")

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(korean, cues("matrix 행렬", language="ko"))
        await search.index_video(english, cues("matrix", language="en"))
        await search.index_video(
            mixed, [*cues("행렬 matrix", language="ko"), *cues("the matrix", language="en", start=100)]
        )
        return await search.search("matrix", filters=SearchFilters(language="en"))

    result = run(scenario)
    assert set(ids(result)) == {english.id, mixed.id}
    mixed_hit = next(hit for hit in result.hits if hit.video_id == mixed.id)
    assert [cue.text for cue in mixed_hit.cues] == ["the matrix"]


def test_owner_filter_keeps_only_that_owners_videos(run: Callable[[Scenario[Any]], Any]) -> None:
    owner = uuid.uuid4()
    mine = video("Topology", owner_id=owner)
    theirs = video("Topology", owner_id=uuid.uuid4())
    nobodys = video("Topology", owner_id=None)

    async def scenario(search: SearchBackend) -> SearchResult:
        for lecture in (mine, theirs, nobodys):
            await search.index_video(lecture, [])
        return await search.search("topology", filters=SearchFilters(owner_id=owner))

    assert ids(run(scenario)) == [mine.id]


def test_visible_to_keeps_that_accounts_videos_and_unowned_ones(run: Callable[[Scenario[Any]], Any]) -> None:
    owner = uuid.uuid4()
    mine = video("Topology", owner_id=owner)
    theirs = video("Topology", owner_id=uuid.uuid4())
    nobodys = video("Topology", owner_id=None)

    async def scenario(search: SearchBackend) -> SearchResult:
        for lecture in (mine, theirs, nobodys):
            await search.index_video(lecture, [])
        return await search.search("topology", filters=SearchFilters(visible_to=owner))

    result = run(scenario)
    assert sorted(ids(result)) == sorted([mine.id, nobodys.id])
    assert result.total == 2


def test_duration_range_is_inclusive_and_excludes_unknown_durations(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    short, medium, long, unknown = (video("Limits", duration=d) for d in (60.0, 600.0, 3600.0, None))

    async def scenario(search: SearchBackend) -> tuple[SearchResult, SearchResult]:
        for lecture in (short, medium, long, unknown):
            await search.index_video(lecture, [])
        both = SearchFilters(min_duration=600.0, max_duration=1000.0)
        at_least = SearchFilters(min_duration=500.0)
        return (
            await search.search("limits", filters=both),
            await search.search("limits", filters=at_least),
        )

    both, at_least = run(scenario)
    assert ids(both) == [medium.id]
    assert set(ids(at_least)) == {medium.id, long.id}


def test_only_ready_videos_are_found_unless_other_statuses_are_asked_for(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    ready = video("Groups", status="ready")
    processing = video("Groups", status="processing")

    async def scenario(search: SearchBackend) -> tuple[SearchResult, SearchResult]:
        await search.index_video(ready, [])
        await search.index_video(processing, [])
        wider = SearchFilters(statuses=("ready", "processing"))
        return await search.search("groups"), await search.search("groups", filters=wider)

    default, wider = run(scenario)
    assert ids(default) == [ready.id]
    assert set(ids(wider)) == {ready.id, processing.id}


# --- index maintenance ----------------------------------------------------------------------


def test_a_deleted_video_is_no_longer_found_or_suggested(run: Callable[[Scenario[Any]], Any]) -> None:
    kept = video("Graph theory")
    deleted = video("Graph algorithms")

    async def scenario(search: SearchBackend) -> tuple[SearchResult, list[Any]]:
        await search.index_video(kept, cues("graph"))
        await search.index_video(deleted, cues("graph"))
        await search.delete_video(deleted.id)
        await search.delete_video(uuid.uuid4())
        return await search.search("graph"), await search.suggest("gr")

    result, suggestions = run(scenario)
    assert ids(result) == [kept.id]
    assert [suggestion.video_id for suggestion in suggestions] == [kept.id]


def test_indexing_twice_leaves_one_copy_and_replaces_the_old_cues(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    lecture = video("Probability")
    first = cues("dice and coins", "more dice")
    renamed = VideoDocument(**{**lecture.__dict__, "title": "Probability II"})

    async def scenario(search: SearchBackend) -> tuple[SearchResult, SearchResult, SearchResult]:
        await search.index_video(lecture, first)
        await search.index_video(lecture, first)
        twice = await search.search("dice", cues_per_video=10)
        await search.index_video(renamed, cues("cards"))
        return twice, await search.search("dice"), await search.search("cards probability")

    twice, stale, fresh = run(scenario)
    assert twice.total == 1
    assert [cue.text for cue in twice.hits[0].cues] == ["dice and coins", "more dice"]
    assert stale.total == 0
    assert [hit.title for hit in fresh.hits] == ["Probability II"]


def test_indexing_a_thousand_cues_takes_well_under_a_second(run: Callable[[Scenario[Any]], Any]) -> None:
    lecture = video("Long lecture")
    many = cues(*(f"문장 {n}: eigenvalue number {n}" for n in range(1000)))

    async def scenario(search: SearchBackend) -> tuple[float, SearchResult]:
        started = time.perf_counter()
        await search.index_video(lecture, many)
        elapsed = time.perf_counter() - started
        return elapsed, await search.search("number 999")

    elapsed, result = run(scenario)
    assert elapsed < 1.0
    assert result.total == 1
    assert result.hits[0].cues[0].text == "문장 999: eigenvalue number 999"


# --- the database search's own tables -------------------------------------------------------

DATABASES = pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
"""Tests of what only the database backend has: its word table, its ranking cap, its migration."""

_HAND_MADE_INDEXES = {
    "ix_search_videos_title_trgm",
    "ix_search_videos_description_trgm",
    "ix_search_words_text_trgm",
    "ix_search_words_text_vector",
    "ix_search_words_text_characters",
}
"""PostgreSQL indexes the migrations create in SQL because the models cannot declare them."""


def _table_rows(database_url: str, statement: Any) -> list[Any]:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            return list(connection.execute(statement).all())
    finally:
        engine.dispose()


def _words_of(database_url: str, video_id: uuid.UUID) -> list[tuple[str | None, str, int, tuple[int, ...]]]:
    """The video's word rows, with their ordinals unpacked, in a stable order."""
    columns = (search_words.c.language, search_words.c.text, search_words.c.cues, search_words.c.ordinals)
    rows = _table_rows(database_url, select(*columns).where(search_words.c.video_id == video_id))
    unpacked = [(row[0], row[1], row[2], struct.unpack(f"<{len(row[3]) // 4}I", row[3])) for row in rows]
    return sorted(unpacked, key=lambda row: (row[0] or "", row[1]))


def _cues_of(database_url: str, video_id: uuid.UUID) -> list[tuple[int, str]]:
    statement = select(search_cues.c.ordinal, search_cues.c.text).where(search_cues.c.video_id == video_id)
    return sorted(tuple(row) for row in _table_rows(database_url, statement))


@DATABASES
def test_indexing_again_and_deleting_keep_the_word_table_in_step(
    run: Callable[[Scenario[Any]], Any], database_url: str
) -> None:
    lecture = video("Words")
    english = cues("Matrix times matrix", "the Matrix", language="en")
    both = [*cues("행렬 곱", "행렬", language="ko", start=50), *cues("a matrix", language="en", start=1)]

    run(lambda search: search.index_video(lecture, english))
    first = _words_of(database_url, lecture.id)
    run(lambda search: search.index_video(lecture, both))
    second, second_cues = _words_of(database_url, lecture.id), _cues_of(database_url, lecture.id)
    run(lambda search: search.delete_video(lecture.id))

    assert first == [("en", "matrix", 2, (0, 1)), ("en", "the", 1, (1,)), ("en", "times", 1, (0,))]
    assert second == [("en", "a", 1, (0,)), ("en", "matrix", 1, (0,)), ("ko", "곱", 1, (1,)), ("ko", "행렬", 2, (1, 2))]
    assert second_cues == [(0, "a matrix"), (1, "행렬 곱"), (2, "행렬")]
    assert _words_of(database_url, lecture.id) == [] and _cues_of(database_url, lecture.id) == []


@DATABASES
def test_past_ten_cues_a_word_adds_nothing_more_to_the_rank(run: Callable[[Scenario[Any]], Any]) -> None:
    nine, ten, thirty = video("Week 1"), video("Week 2"), video("Week 3")

    async def scenario(search: SearchBackend) -> dict[uuid.UUID, float]:
        for lecture, count in ((nine, 9), (ten, 10), (thirty, 30)):
            await search.index_video(lecture, cues(*["행렬의 곱"] * count))
        return {hit.video_id: hit.score for hit in (await search.search("행렬")).hits}

    scores = run(scenario)
    assert scores[ten.id] == scores[thirty.id] > scores[nine.id]


@pytest.mark.parametrize("backend_name", ["postgresql", "opensearch"])
def test_other_english_forms_of_a_word_are_found_where_the_backend_stems(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    lecture = video("Exercise", language="en")

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(lecture, cues("she runs every morning", "nothing here", language="en"))
        return await search.search("running")

    result = run(scenario)
    assert ids(result) == [lecture.id]
    assert [cue.text for cue in result.hits[0].cues] == ["she runs every morning"]


@contextmanager
def _scratch_database(backend_name: str, tmp_path: Path, name: str) -> Iterator[str]:
    """An empty database of its own, for tests that migrate step by step."""
    if backend_name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / name}.db"
        return
    if reason := services.postgres_available():
        services.unavailable(reason)
    database = services.unique(f"vidpipe_search_{name}")
    services.create_database(database)
    try:
        yield services.pg_url(database)
    finally:
        services.drop_database(database)


def _library() -> list[tuple[VideoDocument, list[CueDocument]]]:
    """Videos whose cue ids are not in time order, with two tracks, a tie in time and an empty video."""
    korean = cues("행렬과 고유값을 배웁니다", "고유값 분해", "행렬식", start=30)
    english = cues("The matrix is symmetric", "every eigenvalue is real", language="en", start=30)
    tied = CueDocument(
        id=next(_cue_ids), track_id=uuid.uuid4(), language="ko", start=30.0, end=31.0, text="행렬 고유값"
    )
    return [
        (video("선형대수 1", language="ko"), [*reversed(korean), *english, tied]),
        (video("Linear algebra 2", language="en", description="Matrices"), cues("matrix 행렬", language="en")),
        (video("Empty lecture"), []),
    ]


_CUE_FIELDS = ("id", "track_id", "language", "start", "end", "text")


def _write_as_revision_0009(database_url: str, library: list[tuple[VideoDocument, list[CueDocument]]]) -> None:
    """What the database search wrote before revision 0010: videos and cues, without words or ordinals."""
    videos = table(
        "search_videos",
        column("video_id", Uuid()),
        *(column(name) for name in ("title", "description", "language", "owner_id", "status", "duration")),
    )
    old_cues = table(
        "search_cues",
        column("video_id", Uuid()),
        column("track_id", Uuid()),
        *(column(name) for name in ("id", "language", "start", "end", "text")),
    )
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as connection:
            for document, its_cues in library:
                fields = {name: getattr(document, name) for name in ("title", "description", "language", "status")}
                connection.execute(
                    insert(videos).values(video_id=document.id, owner_id=None, duration=document.duration, **fields)
                )
                for cue in its_cues:
                    values = {
                        name: getattr(cue, name) for name in ("id", "track_id", "language", "start", "end", "text")
                    }
                    connection.execute(insert(old_cues).values(video_id=document.id, **values))
    finally:
        engine.dispose()


async def _answers(settings: Settings) -> list[dict[str, Any]]:
    """The answers a migrated and a freshly indexed library must agree on."""
    database = open_database(settings)
    search = DatabaseSearch(database)
    try:
        asked = [
            ("행렬", None),
            ("고유값 행렬", None),
            ("값", None),
            ("matrix", None),
            ("matrix", "en"),
            ("행렬", "en"),
        ]
        return [
            (await search.search(query, filters=SearchFilters(language=language), cues_per_video=5)).to_json()
            for query, language in asked
        ]
    finally:
        await database.dispose()


async def _index(settings: Settings, library: list[tuple[VideoDocument, list[CueDocument]]]) -> None:
    database = open_database(settings)
    try:
        for document, its_cues in library:
            await DatabaseSearch(database).index_video(document, its_cues)
    finally:
        await database.dispose()


@DATABASES
def test_the_word_table_migration_fills_in_an_existing_library_and_can_be_undone(
    backend_name: str, tmp_path: Path
) -> None:
    library = _library()
    with (
        _scratch_database(backend_name, tmp_path, "migrated") as migrated,
        _scratch_database(backend_name, tmp_path, "indexed") as indexed,
    ):
        upgrade(migrated, "0009")
        _write_as_revision_0009(migrated, library)
        upgrade(migrated)
        upgrade(indexed)
        asyncio.run(_index(_settings(tmp_path, indexed), library))
        expected = asyncio.run(_answers(_settings(tmp_path, indexed)))
        assert [answer["total"] for answer in expected] == [2, 1, 1, 2, 2, 1]
        assert asyncio.run(_answers(_settings(tmp_path, migrated))) == expected

        command.downgrade(alembic_config(migrated), "0009")
        assert "search_words" not in inspect(create_engine(sync_url(migrated))).get_table_names()
        assert _old_cue_index_finds(migrated, "고유값") == 3
        upgrade(migrated)
        assert asyncio.run(_answers(_settings(tmp_path, migrated))) == expected


def _old_cue_index_finds(database_url: str, needle: str) -> int:
    """How many cues revision 0004's cue index finds: it must be rebuilt by the downgrade."""
    if database_url.startswith("sqlite"):
        statement = sql_text("SELECT count(*) FROM search_cues_fts WHERE search_cues_fts MATCH :phrase")
        return int(_table_rows(database_url, statement.bindparams(phrase=f'"{needle}"'))[0][0])
    statement = sql_text("SELECT count(*) FROM search_cues WHERE text_folded LIKE :pattern")
    return int(_table_rows(database_url, statement.bindparams(pattern=f"%{needle}%"))[0][0])


@DATABASES
def test_the_search_tables_the_migrations_make_agree_with_the_models(backend_name: str, tmp_path: Path) -> None:
    with _scratch_database(backend_name, tmp_path, "schema") as url:
        upgrade(url)
        engine = create_engine(sync_url(url))
        try:
            with engine.connect() as connection:
                differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        finally:
            engine.dispose()
    assert [difference for difference in differences if _about_search_tables(difference)] == []


def _about_search_tables(difference: Any) -> bool:
    """Whether an autogenerate difference concerns a search table, less what SQL made by hand."""
    if isinstance(difference, list):
        return any(_about_search_tables(item) for item in difference)
    kind, subject = difference[0], difference[1]
    if kind.endswith("_index"):
        return subject.table.name.startswith("search_") and subject.name not in _HAND_MADE_INDEXES
    if kind.endswith("_table"):
        return subject.name in ("search_videos", "search_cues", "search_words")
    table_name, column_name = difference[2], difference[3]
    column_name = getattr(column_name, "name", column_name)
    return table_name.startswith("search_") and column_name != "text_vector"


# --- hostile and invalid input --------------------------------------------------------------

HOSTILE_QUERIES = [
    "*:*",
    "(",
    ")",
    '"',
    '"unterminated phrase',
    "NEAR(",
    "NEAR(a b, 2)",
    "AND OR NOT",
    "title : x",
    "{title description}: x",
    "^start",
    "a*",
    "%",
    "_",
    "\\",
    "'; DROP TABLE search_videos; --",
    "\x00",
    "null\x00byte",
    "\ud800",
    "x" * 500,
    " ".join(f"w{n}" for n in range(200))[:500],
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_hostile_queries_are_searched_as_plain_text(run: Callable[[Scenario[Any]], Any], query: str) -> None:
    lecture = video("Safe")

    async def scenario(search: SearchBackend) -> tuple[SearchResult | None, SearchResult]:
        await search.index_video(lecture, cues('AND OR NOT (a*) "quoted" 50% snake_case \\ *:*'))
        try:
            result: SearchResult | None = await search.search(query)
        except InvalidInput as exc:
            assert exc.code == "search.empty_query"
            result = None
        return result, await search.search("safe")

    result, afterwards = run(scenario)
    assert result is None or result.total == len(result.hits)
    assert ids(afterwards) == [lecture.id]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "search.empty_query"),
        ("  \t\n ", "search.empty_query"),
        ("x" * 501, "search.query_too_long"),
        ("고유값 " * 2000, "search.query_too_long"),
        ("x" * 10_000, "search.query_too_long"),
    ],
)
def test_empty_and_overlong_queries_are_refused_with_a_code(
    run: Callable[[Scenario[Any]], Any], query: str, code: str
) -> None:
    async def scenario(search: SearchBackend) -> None:
        await search.search(query)

    with pytest.raises(InvalidInput) as caught:
        run(scenario)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"page": 0}, "search.invalid_page"),
        ({"per_page": 0}, "search.invalid_per_page"),
        ({"per_page": 101}, "search.invalid_per_page"),
        ({"cues_per_video": -1}, "search.invalid_cues_per_video"),
        ({"page": 10**30}, "search.page_too_deep"),
    ],
)
def test_pages_outside_the_result_window_are_refused(
    run: Callable[[Scenario[Any]], Any], options: dict[str, Any], code: str
) -> None:
    async def scenario(search: SearchBackend) -> None:
        await search.search("algebra", **options)

    with pytest.raises(InvalidInput) as caught:
        run(scenario)
    assert caught.value.code == code


# --- suggestions ----------------------------------------------------------------------------


def test_one_korean_syllable_suggests_titles_with_a_word_starting_with_it(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    starts = video("선형대수 입문")
    later_word = video("고급 선형대수")
    mid_word = video("미분방정식")

    async def scenario(search: SearchBackend) -> tuple[list[Any], list[Any]]:
        for lecture in (starts, later_word, mid_word):
            await search.index_video(lecture, [])
        return await search.suggest("선"), await search.suggest("방")

    syllable, inside = run(scenario)
    assert [(s.text, s.video_id) for s in syllable] == [
        ("선형대수 입문", starts.id),
        ("고급 선형대수", later_word.id),
    ]
    assert inside == []


def test_one_latin_letter_suggests_titles_case_insensitively(run: Callable[[Scenario[Any]], Any]) -> None:
    titles = ("Linear Algebra", "Intro to linear models", "Calculus", "(Lambda) calculus")

    async def scenario(search: SearchBackend) -> tuple[list[Any], list[Any]]:
        for title in titles:
            await search.index_video(video(title), [])
        return await search.suggest("L"), await search.suggest("lin")

    letter, word = run(scenario)
    assert [s.text for s in letter] == ["Linear Algebra", "Intro to linear models", "(Lambda) calculus"]
    assert [s.text for s in word] == ["Linear Algebra", "Intro to linear models"]


def test_suggestions_skip_unready_videos_drop_duplicates_and_respect_the_limit(
    run: Callable[[Scenario[Any]], Any],
) -> None:
    async def scenario(search: SearchBackend) -> tuple[list[Any], list[Any], list[Any]]:
        for title, status in [("Set theory", "ready"), ("Set theory", "ready"), ("Sets draft", "processing")]:
            await search.index_video(video(title, status=status), [])
        await search.index_video(video("Sequences"), [])
        return await search.suggest("se"), await search.suggest("se", limit=1), await search.suggest("  ")

    both, one, blank = run(scenario)
    assert [s.text for s in both] == ["Sequences", "Set theory"]
    assert [s.text for s in one] == ["Sequences"]
    assert blank == []


def test_hostile_prefixes_suggest_nothing_rather_than_failing(run: Callable[[Scenario[Any]], Any]) -> None:
    async def scenario(search: SearchBackend) -> list[list[Any]]:
        await search.index_video(video("Ordinary title"), [])
        return [await search.suggest(prefix) for prefix in ("%", "_", "\\", '"', "*", "\x00")]

    assert run(scenario) == [[], [], [], [], [], []]


# --- shapes and plumbing --------------------------------------------------------------------


def test_a_result_turns_into_the_documented_json(run: Callable[[Scenario[Any]], Any]) -> None:
    lecture = video("JSON & you")

    async def scenario(search: SearchBackend) -> SearchResult:
        await search.index_video(lecture, cues("json <3"))
        return await search.search("json")

    document = run(scenario).to_json()
    assert document.keys() == {"total", "hits"}
    assert document["total"] == 1
    (hit,) = document["hits"]
    assert hit.keys() == {"video", "score", "cues"}
    assert hit["video"] == {"id": str(lecture.id), "title": "JSON & you"}
    assert isinstance(hit["score"], float)
    assert hit["cues"] == [{"start": 0.0, "end": 4.0, "text": "json <3", "highlight": "<mark>json</mark> &lt;3"}]


def test_check_passes_on_a_migrated_database(run: Callable[[Scenario[Any]], Any]) -> None:
    async def scenario(search: SearchBackend) -> None:
        await search.check()
        await search.close()

    run(scenario)


def test_check_reports_a_database_without_the_search_tables_as_unavailable(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"

    async def scenario(search: SearchBackend) -> None:
        await search.check()

    with pytest.raises(SearchUnavailable):
        asyncio.run(_with_backend(_settings(tmp_path, url), scenario))


def test_a_database_that_does_not_answer_makes_search_unavailable(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"

    async def scenario(search: SearchBackend) -> None:
        await search.search("anything")

    with pytest.raises(SearchUnavailable) as caught:
        asyncio.run(_with_backend(_settings(tmp_path, url), scenario))
    assert caught.value.code == "search.unavailable"


def test_open_search_picks_the_backend_the_url_names(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'vidpipe.db'}"
    database = open_database(_settings(tmp_path, url))
    try:
        backend = open_search(_settings(tmp_path, url), database)
        assert isinstance(backend, DatabaseSearch)
        assert backend.name == "database"
        settings = _settings(tmp_path, url, VIDPIPE_SEARCH_URL="http://opensearch:9200")
        remote = open_search(settings, database)
        assert isinstance(remote, OpenSearchBackend)
        assert remote.name == "opensearch"
        assert remote.names.alias == "vidpipe-videos"
    finally:
        asyncio.run(database.dispose())


# --- OpenSearch only ------------------------------------------------------------------------


@pytest.fixture
def opensearch(opensearch_url: str, opensearch_prefix: str) -> Callable[[Scenario[Any]], Any]:
    """Run an async scenario against an OpenSearch backend with this test's own prefix."""

    async def scenario_runner(scenario: Scenario[T]) -> T:
        search = OpenSearchBackend(opensearch_url, index_prefix=opensearch_prefix)
        try:
            return await scenario(search)
        finally:
            await search.close()

    return lambda scenario: asyncio.run(scenario_runner(scenario))


def test_a_rebuild_swaps_the_alias_while_searches_keep_answering(
    opensearch: Callable[[Scenario[Any]], Any],
) -> None:
    lectures = [video(f"Rebuild lecture {n}") for n in range(30)]

    async def documents() -> Any:
        for lecture in lectures:
            await asyncio.sleep(0)
            yield lecture, cues(*(f"고유값 문장 {n}" for n in range(200)))

    async def scenario(search: SearchBackend) -> tuple[list[int], str, str, int]:
        assert isinstance(search, OpenSearchBackend)
        for lecture in lectures:
            await search.index_video(lecture, cues("고유값"))
        before = await _alias_target(search)
        rebuild = asyncio.create_task(search.rebuild(documents()))
        totals = []
        while not rebuild.done():
            totals.append((await search.search("고유값")).total)
        report = await rebuild
        totals.append((await search.search("고유값")).total)
        return totals, before, await _alias_target(search), report.videos

    totals, before, after, rebuilt = opensearch(scenario)
    assert len(totals) > 2
    assert set(totals) == {30}
    assert before != after
    assert rebuilt == 30


async def _alias_target(search: OpenSearchBackend) -> str:
    targets = await asyncio.to_thread(search._client.indices.get_alias, name=search.names.alias)
    (name,) = targets
    return str(name)


def test_the_index_is_created_with_strict_mappings_behind_the_alias(
    opensearch: Callable[[Scenario[Any]], Any],
) -> None:
    async def scenario(search: SearchBackend) -> dict[str, Any]:
        assert isinstance(search, OpenSearchBackend)
        await search.check()
        name = await _alias_target(search)
        mapping: dict[str, Any] = await asyncio.to_thread(search._client.indices.get_mapping, index=name)
        return mapping[name]["mappings"]

    mappings = opensearch(scenario)
    assert mappings["dynamic"] == "strict"
    assert mappings["properties"]["cues"]["type"] == "nested"
    assert mappings["properties"]["suggest"]["type"] == "completion"


def test_a_write_after_the_index_vanished_recreates_it_with_its_mappings(
    opensearch: Callable[[Scenario[Any]], Any],
) -> None:
    lecture = video("Recreated")

    async def scenario(search: SearchBackend) -> SearchResult:
        assert isinstance(search, OpenSearchBackend)
        await search.check()
        await asyncio.to_thread(search._client.indices.delete, index=search.names.pattern)
        await search.index_video(lecture, cues("hello"))
        assert (await _alias_target(search)).startswith(search.names.alias)
        return await search.search("recreated")

    assert ids(opensearch(scenario)) == [lecture.id]


def test_a_latin_prefix_with_a_typo_still_suggests_the_title(opensearch: Callable[[Scenario[Any]], Any]) -> None:
    linear = video("Linear Algebra")

    async def scenario(search: SearchBackend) -> tuple[list[Any], list[Any]]:
        await search.index_video(linear, [])
        await search.index_video(video("Calculus"), [])
        return await search.suggest("linaer"), await search.suggest("lnear alg")

    typo, two_words = opensearch(scenario)
    assert [s.video_id for s in typo] == [linear.id]
    assert [s.video_id for s in two_words] == [linear.id]


def test_description_words_suggest_the_title_after_title_matches(opensearch: Callable[[Scenario[Any]], Any]) -> None:
    titled = video("Matrices, part 1")
    described = video("Week 2", description="More about matrices (and determinants).")

    async def scenario(search: SearchBackend) -> list[Any]:
        await search.index_video(described, [])
        await search.index_video(titled, [])
        return await search.suggest("mat")

    assert [s.video_id for s in opensearch(scenario)] == [titled.id, described.id]


def test_an_opensearch_that_does_not_answer_makes_search_unavailable() -> None:
    async def scenario() -> None:
        search = OpenSearchBackend("http://127.0.0.1:1", index_prefix="nowhere", timeout=2)
        try:
            await search.search("anything")
        finally:
            await search.close()

    with pytest.raises(SearchUnavailable) as caught:
        asyncio.run(scenario())
    assert caught.value.code == "search.unavailable"
