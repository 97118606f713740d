"""An OpenSearch outage during the index stage: the stage is retried with backoff and the job finishes."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.progress import wait_for_job
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.states import Stage
from pipeline.submit import submit_file
from tests import mediagen, services
from tests.conftest import embedded_env
from tests.harness import open_pipeline, report, with_runtime
from tests.opensearch_server import OsmemProcess
from workers.broker import DramatiqDispatcher


@pytest.fixture
def osmem(tmp_path: Path) -> OsmemProcess:
    server = OsmemProcess()
    try:
        server.start()
    except Exception as exc:
        services.unavailable(f"osmem-server could not start, so the outage test cannot run: {exc}")
    return server


def test_an_opensearch_outage_during_indexing_is_retried_and_the_job_finishes(
    tmp_path: Path, osmem: OsmemProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **embedded_env(tmp_path),
        "VIDPIPE_SEARCH_URL": osmem.url,
        "VIDPIPE_SEARCH_INDEX_PREFIX": f"outage-{uuid.uuid4().hex[:8]}",
        "VIDPIPE_MAX_ATTEMPTS": "10",
        "VIDPIPE_RETRY_BACKOFF_MS": "300",
        "VIDPIPE_RETRY_BACKOFF_MAX_MS": "1500",
    }
    video = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)

    stopped = threading.Event()
    original = DramatiqDispatcher.send

    # The worker that finishes the last branch sends the index stage, through its own
    # runtime's dispatcher, so the class is wrapped rather than one runtime's instance.
    def send_after_outage(self: DramatiqDispatcher, job_id: uuid.UUID, stage: Stage, *, delay_ms: int = 0) -> None:
        if stage is Stage.INDEX and not stopped.is_set():
            osmem.stop()  # the search cluster goes away just as the index stage is sent
            stopped.set()
        original(self, job_id, stage, delay_ms=delay_ms)

    monkeypatch.setattr(DramatiqDispatcher, "send", send_after_outage)

    async def scenario(runtime: Runtime) -> tuple[dict[str, object], list[uuid.UUID]]:
        submitted = await submit_file(runtime, video, title="Outage recovery lecture")
        assert await asyncio.to_thread(stopped.wait, 60)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(osmem.start)  # back on the same port, empty, as after a restart
        await wait_for_job(runtime, submitted.job_id, show=False, timeout=90)
        found = await runtime.search.search("outage recovery")
        return await report(runtime, submitted.job_id), [hit.video_id for hit in found.hits]

    try:
        with open_pipeline(Settings.from_env(env).with_secret()) as pipeline:
            result, found = with_runtime(pipeline, scenario)
    finally:
        osmem.stop()

    assert result["job"]["status"] == "succeeded", result  # type: ignore[index]
    index = next(s for s in result["stages"] if s["name"] == "index")  # type: ignore[attr-defined]
    assert index["attempts"] >= 2
    assert found == [uuid.UUID(str(result["video"]["id"]))]  # type: ignore[index]


def test_a_rebuild_brings_over_what_the_pipeline_indexed_and_deleted_while_it_ran(
    tmp_path: Path, osmem: OsmemProcess
) -> None:
    from pipeline.db.models import utcnow
    from pipeline.edits import delete_video
    from pipeline.search.documents import load_documents
    from pipeline.search.maintenance import catch_up
    from pipeline.search.opensearch import OpenSearchBackend
    from tests.harness import process

    env = {
        **embedded_env(tmp_path),
        "VIDPIPE_SEARCH_URL": osmem.url,
        "VIDPIPE_SEARCH_INDEX_PREFIX": f"rebuild-{uuid.uuid4().hex[:8]}",
    }
    clips = {name: mediagen.make_video(tmp_path / f"{name}.mp4", duration=1.0) for name in ("a", "b", "c")}

    async def found(runtime: Runtime, query: str) -> int:
        return (await runtime.search.search(query)).total

    async def scenario(runtime: Runtime) -> tuple[list[int], int, list[int]]:
        search = runtime.search
        assert isinstance(search, OpenSearchBackend)
        albatross = await process(runtime, clips["a"], title="Albatross lecture")
        condor = await process(runtime, clips["c"], title="Condor lecture")
        listed = [uuid.UUID(str(done["video"]["id"])) for done in (albatross, condor)]  # type: ignore[index]
        # The rebuild starts and reads its documents (both videos) ...
        began = utcnow()
        async with runtime.database.sessions() as session:
            documents = [await load_documents(session, video_id) for video_id in listed]
        # ... while the pipeline indexes a new video and a member deletes one: both reach the old index.
        await process(runtime, clips["b"], title="Bittern lecture")
        await delete_video(runtime, listed[1])

        async def read() -> Any:
            for document in documents:
                yield document

        await search.rebuild(read())
        swapped = [await found(runtime, "bittern"), await found(runtime, "condor")]
        changed = await catch_up(search, runtime.database, set(listed), began)
        return swapped, changed, [await found(runtime, "bittern"), await found(runtime, "condor")]

    try:
        with open_pipeline(Settings.from_env(env).with_secret()) as pipeline:
            swapped, changed, caught_up = with_runtime(pipeline, scenario)
    finally:
        osmem.stop()

    assert swapped == [0, 1], "the new index holds only what the rebuild read"
    assert changed == 2
    assert caught_up == [1, 0]
