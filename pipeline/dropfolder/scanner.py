"""The drop-folder scanner: turns files dropped in ``VIDPIPE_INGEST_URL`` into videos and jobs.

One pass (:meth:`DropScanner.scan_once`) lists the drop location, records each video file it
has not seen (by key and fingerprint), and takes a file once it and its sidecars have stopped
changing for ``VIDPIPE_INGEST_SETTLE_MS``. Taking a file means copying it out while hashing it,
recognising content that was already taken (same SHA-256), reading its sidecars and calling
:func:`pipeline.submit.submit_file`, the path an API upload takes. The file and its sidecars
are then filed under ``processed/``, ``duplicates/`` or ``rejected/`` so that what is left
outside those areas is what is still pending.

Several scanners may run at once: the ``drops`` table's unique key decides who records a
file, a conditional update decides who takes it, and the loser backs off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline.db.models import Video, utcnow
from pipeline.dropfolder.layout import (
    DUPLICATES_AREA,
    PROCESSED_AREA,
    REJECTED_AREA,
    DropGroup,
    filed_key,
    group_drops,
)
from pipeline.dropfolder.models import DROP_FINISHED, Drop, DropStatus
from pipeline.dropfolder.sidecars import MAX_METADATA_BYTES, DropMetadata, parse_metadata, resolve_owner
from pipeline.errors import InvalidInput, ObjectMissing, PermanentError, VidpipeError
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.storage import open_storage_at
from pipeline.storage.base import Storage, StoredObject
from pipeline.submit import SubtitleFile, submit_file

logger = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=30)
"""A claim older than this belongs to a scanner that died; another scanner may take the drop over."""

_AREA_OF = {
    DropStatus.SUBMITTED: PROCESSED_AREA,
    DropStatus.DUPLICATE: DUPLICATES_AREA,
    DropStatus.REJECTED: REJECTED_AREA,
}


@dataclass
class ScanReport:
    """What one pass over the drop location did."""

    new: int = 0
    """Video files seen for the first time."""
    settling: int = 0
    """Files still changing (or changed too recently) and left for a later pass."""
    submitted: int = 0
    rejected: int = 0
    duplicates: int = 0
    sidecar_problems: int = 0
    """Notes recorded on submitted videos about sidecars that could not be used."""
    errors: int = 0
    """Files left for the next pass because the store or database failed."""
    jobs: list[uuid.UUID] = field(default_factory=list)
    """The jobs this pass started, in order."""

    def to_json(self) -> dict[str, Any]:
        """The counts and job ids as plain JSON data."""
        data = asdict(self)
        data["jobs"] = [str(job_id) for job_id in self.jobs]
        return data


@dataclass(frozen=True)
class _Fetched:
    """A drop's video copied to local disk, with what the copy measured."""

    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class _Finish:
    """How a taken drop ended, as written to its row."""

    status: DropStatus
    video_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    error_code: str | None = None
    error_message: str | None = None
    sha256: str | None = None


def ingest_url(settings: Settings) -> str:
    """The drop location: ``VIDPIPE_INGEST_URL``, or ``$VIDPIPE_DATA_DIR/incoming``."""
    return settings.ingest_url or (settings.data_dir / "incoming").as_uri()


class DropScanner:
    """Takes video files from one drop location into the pipeline.

    Args:
        runtime: The database, object store and dispatcher that submitted videos go to.
        drops: The store rooted at the drop location.
        settle_seconds: How long a file must be unchanged before it is taken; the
            runtime's ``ingest_settle_seconds`` when ``None``.
        clock: The current UTC time; tests replace it.
    """

    def __init__(
        self,
        runtime: Runtime,
        drops: Storage,
        *,
        settle_seconds: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runtime = runtime
        self.drops = drops
        seconds = runtime.settings.ingest_settle_seconds if settle_seconds is None else settle_seconds
        self.settle = timedelta(seconds=seconds)
        self._clock = clock

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> DropScanner:
        """A scanner over the drop location the runtime's settings name.

        Raises:
            ConfigurationError: ``VIDPIPE_INGEST_URL`` names no usable folder or bucket.
        """
        store = open_storage_at(ingest_url(runtime.settings), runtime.settings, variable="VIDPIPE_INGEST_URL")
        return cls(runtime, store)

    async def scan_once(self) -> ScanReport:
        """List the drop location once and move every file as far along as it can go now."""
        started = time.monotonic()
        report = ScanReport()
        # TODO(ingest-listing): this lists the finished areas too and drops them in memory; a
        # delimiter-aware listing would keep a pass cheap once processed/ holds many files.
        groups = group_drops(await self.drops.list(""))
        for group in groups:
            await self._consider_safely(group, report)
        logger.info(
            "Drop location %s scanned in %.2f s: %d files, %d new, %d settling, %d submitted, %d duplicates, "
            "%d rejected, %d errors.",
            self.drops.description,
            time.monotonic() - started,
            len(groups),
            report.new,
            report.settling,
            report.submitted,
            report.duplicates,
            report.rejected,
            report.errors,
        )
        return report

    async def _consider_safely(self, group: DropGroup, report: ScanReport) -> None:
        # One bad file must never stop the pass: whatever it is, the next pass tries again.
        key = group.video.key
        try:
            await self._consider(group, report)
        except VidpipeError as error:
            report.errors += 1
            logger.warning("Drop %s was left for the next scan: %s", key, error.message)
        except Exception:
            report.errors += 1
            logger.exception("Drop %s failed unexpectedly and was left for the next scan.", key)

    async def _consider(self, group: DropGroup, report: ScanReport) -> None:
        video = group.video
        drop = await self._find(video.key, _fingerprint(video))
        if drop is None:
            drop = await self._record(video, report)
            if drop is None:
                return
        if drop.status in DROP_FINISHED:
            await self._refile(drop, group, report)
            return
        if not self._settled(drop, group):
            report.settling += 1
            return
        if not await self._claim(drop):
            logger.debug("Drop %s of %s is being taken by another scanner.", drop.id, video.key)
            return
        await self._take(drop, group, report)

    async def _find(self, key: str, fingerprint: str) -> Drop | None:
        async with self.runtime.database.sessions() as session:
            return await session.scalar(select(Drop).where(Drop.key == key, Drop.fingerprint == fingerprint))

    async def _record(self, video: StoredObject, report: ScanReport) -> Drop | None:
        """Record a file version seen for the first time; ``None`` when it is not to be taken yet."""
        now = self._clock()
        async with self.runtime.database.sessions() as session:
            earlier = await session.scalar(
                select(Drop).where(Drop.key == video.key, Drop.status == DropStatus.SETTLING).limit(1)
            )
            if earlier is not None:
                # The same name with new content while it settles: the file is still being written.
                await session.execute(
                    update(Drop)
                    .where(Drop.id == earlier.id, Drop.fingerprint == earlier.fingerprint)
                    .values(fingerprint=_fingerprint(video), size=video.size, mtime=video.modified, last_changed_at=now)
                )
                await _commit_or_back_off(session, f"the change of {video.key}")
                report.settling += 1
                return None
            drop = _new_drop(video, now)
            session.add(drop)
            if not await _commit_or_back_off(session, f"the first sight of {video.key}"):
                return None
        report.new += 1
        logger.info("Drop %s: %s (%d bytes) appeared in the drop location.", drop.id, video.key, video.size)
        return drop

    def _settled(self, drop: Drop, group: DropGroup) -> bool:
        """Whether the video and its sidecars have been unchanged for the settle time.

        A file is unchanged at least since this scanner first saw its fingerprint, and since
        its own modification time, whichever is earlier: so a file that lay there while no
        scanner ran is taken at once, and a file still growing never is.
        """
        now = self._clock()
        since = drop.last_changed_at
        if group.video.modified is not None:
            since = min(since, group.video.modified)
        if now - since < self.settle:
            return False
        newest_sidecar = group.newest_change
        return newest_sidecar is None or now - newest_sidecar >= self.settle

    async def _claim(self, drop: Drop) -> bool:
        now = self._clock()
        async with self.runtime.database.sessions() as session:
            result = await session.execute(
                update(Drop)
                .where(
                    Drop.id == drop.id,
                    or_(
                        Drop.status == DropStatus.SETTLING,
                        and_(Drop.status == DropStatus.PENDING, Drop.claimed_at < now - CLAIM_LEASE),
                    ),
                )
                .values(status=DropStatus.PENDING, claimed_at=now)
            )
            await session.commit()
        return _changed(result)

    async def _take(self, drop: Drop, group: DropGroup, report: ScanReport) -> None:
        if group.video.size == 0:
            message = "The file is empty (0 bytes); drop the video again once it is fully copied."
            await self._conclude(drop, group, _Finish(DropStatus.REJECTED, None, None, "input.empty_file", message))
            report.rejected += 1
            return
        with tempfile.TemporaryDirectory(prefix="vidpipe-drop-") as scratch:
            try:
                fetched = await self._fetch(group.video, Path(scratch))
            except ObjectMissing:
                await self._release(drop)
                logger.info("Drop %s: %s vanished before it could be taken.", drop.id, group.video.key)
                return
            if fetched.size != group.video.size:
                await self._release(drop)
                report.settling += 1
                logger.info("Drop %s: %s changed while it was copied; it settles again.", drop.id, group.video.key)
                return
            await self._take_fetched(drop, group, fetched, report)

    async def _take_fetched(self, drop: Drop, group: DropGroup, fetched: _Fetched, report: ScanReport) -> None:
        # Hold the content first, then look for an earlier taker: in this order two scanners
        # hashing the same bytes cannot both miss each other (see ``ux_drops_pending_sha256``).
        if await self._hold_content(drop, fetched.sha256):
            original = await self._original(fetched.sha256, drop.id)
        else:
            original = await self._original(fetched.sha256, drop.id) or _Original(None, "another drop")
        if original is not None:
            message = f"The same content (SHA-256 {fetched.sha256[:12]}…) was already taken as {original.label}."
            finish = _Finish(DropStatus.DUPLICATE, original.video_id, None, "ingest.duplicate", message, fetched.sha256)
            await self._conclude(drop, group, finish)
            report.duplicates += 1
            return
        await self._submit(drop, group, fetched, report)

    async def _submit(self, drop: Drop, group: DropGroup, fetched: _Fetched, report: ScanReport) -> None:
        folder = fetched.path.parent
        metadata = await self._metadata(group)
        subtitles = await self._subtitles(group, folder, metadata.notes)
        owner_id = await self._owner(metadata)
        try:
            # TODO(ingest-copy): on S3 the drop is downloaded and uploaded again; a server-side
            # copy into the pipeline's bucket would save both transfers for large lectures.
            submitted = await submit_file(
                self.runtime,
                fetched.path,
                title=metadata.title,
                description=metadata.description,
                language=metadata.language,
                subtitles=subtitles,
                poster_at=metadata.poster_at,
                owner_id=owner_id,
                notes=metadata.notes,
            )
        except PermanentError as error:
            refused = _Finish(DropStatus.REJECTED, None, None, error.code, error.message)
            await self._conclude(drop, group, refused)
            report.rejected += 1
            return
        except BaseException:
            # TODO(ingest-submit): a failure after submit_file committed the video (the broker
            # refusing the first message) would make a second video on the next pass.
            await self._release(drop)
            raise
        finish = _Finish(DropStatus.SUBMITTED, submitted.video_id, submitted.job_id)
        await self._conclude(drop, group, finish)
        report.submitted += 1
        report.sidecar_problems += len(metadata.notes)
        report.jobs.append(submitted.job_id)
        logger.info(
            "Drop %s: %s became video %s, job %s, with %d subtitle files and %d notes.",
            drop.id,
            group.video.key,
            submitted.video_id,
            submitted.job_id,
            len(subtitles),
            len(metadata.notes),
        )

    async def _fetch(self, video: StoredObject, folder: Path) -> _Fetched:
        """Copy the video to ``folder`` under its own name, hashing it on the way."""
        path = folder / PurePosixPath(video.key).name
        digest = hashlib.sha256()
        size = 0
        chunks = cast(AsyncGenerator[bytes, None], self.drops.iter_chunks(video.key))
        with path.open("wb") as out:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    await asyncio.to_thread(_absorb, out, digest, chunk)
                    size += len(chunk)
        return _Fetched(path=path, size=size, sha256=digest.hexdigest())

    async def _original(self, sha256: str, drop_id: uuid.UUID) -> _Original | None:
        """The video, or the other drop, that already has this content, if any.

        A drop whose video was deleted since does not count, so the same lecture can be
        dropped again after its video was removed.
        """
        async with self.runtime.database.sessions() as session:
            video_id = await session.scalar(
                select(Video.id).where(Video.sha256 == sha256).order_by(Video.created_at).limit(1)
            )
            if video_id is not None:
                return _Original(video_id, f"video {video_id}")
            other = await session.scalar(
                select(Drop)
                .where(
                    Drop.sha256 == sha256,
                    Drop.id != drop_id,
                    or_(
                        Drop.status == DropStatus.PENDING,
                        and_(Drop.status == DropStatus.SUBMITTED, Drop.video_id.is_not(None)),
                    ),
                )
                .limit(1)
            )
        if other is None:
            return None
        label = f"video {other.video_id} (from {other.key})" if other.video_id else f"the drop {other.key}"
        return _Original(other.video_id, label)

    async def _hold_content(self, drop: Drop, sha256: str) -> bool:
        """Record the hash on the claimed drop; ``False`` when another drop being taken holds it."""
        async with self.runtime.database.sessions() as session:
            await session.execute(
                update(Drop).where(Drop.id == drop.id, Drop.status == DropStatus.PENDING).values(sha256=sha256)
            )
            return await _commit_or_back_off(session, f"the content hash of {drop.key}")

    async def _metadata(self, group: DropGroup) -> DropMetadata:
        if group.metadata is None:
            return DropMetadata()
        name = PurePosixPath(group.metadata.key).name
        try:
            data = await self.drops.get_bytes(group.metadata.key, max_size=MAX_METADATA_BYTES)
        except ObjectMissing:
            return DropMetadata(notes=[f"The metadata file {name} disappeared before it could be read."])
        except InvalidInput:
            return DropMetadata(notes=[f"The metadata file {name} is larger than {MAX_METADATA_BYTES} bytes."])
        return parse_metadata(name, data)

    async def _subtitles(self, group: DropGroup, folder: Path, notes: list[str]) -> list[SubtitleFile]:
        """Copy the subtitle sidecars out; the subtitles stage judges their content later."""
        files: list[SubtitleFile] = []
        for sidecar in group.subtitles:
            path = folder / PurePosixPath(sidecar.key).name
            try:
                await self.drops.download(sidecar.key, path)
            except ObjectMissing:
                notes.append(f"The subtitle file {path.name} disappeared before it could be read.")
                continue
            files.append(SubtitleFile(path))
        return files

    async def _owner(self, metadata: DropMetadata) -> uuid.UUID | None:
        if metadata.owner is None:
            return None
        async with self.runtime.database.sessions() as session:
            owner_id = await resolve_owner(session, metadata.owner)
        if owner_id is None:
            metadata.notes.append(f"The owner {metadata.owner!r} is not a known user, so the video has no owner.")
        return owner_id

    async def _release(self, drop: Drop) -> None:
        """Hand a claimed drop back to settling, so a later pass takes it again."""
        async with self.runtime.database.sessions() as session:
            await session.execute(
                update(Drop)
                .where(Drop.id == drop.id, Drop.status == DropStatus.PENDING)
                .values(status=DropStatus.SETTLING, claimed_at=None, last_changed_at=self._clock())
            )
            await session.commit()

    async def _conclude(self, drop: Drop, group: DropGroup, finish: _Finish) -> None:
        """Record how the drop ended, then file it away; a crash in between is mended by :meth:`_refile`."""
        destination = await self._destination(_AREA_OF[finish.status], drop, group.video.key)
        async with self.runtime.database.sessions() as session:
            result = await session.execute(
                update(Drop)
                .where(Drop.id == drop.id, Drop.status == DropStatus.PENDING)
                .values(
                    status=finish.status,
                    video_id=finish.video_id,
                    job_id=finish.job_id,
                    error_code=finish.error_code,
                    error_message=finish.error_message,
                    moved_to=destination,
                    finished_at=self._clock(),
                    **({"sha256": finish.sha256} if finish.sha256 else {}),
                )
            )
            await session.commit()
        if not _changed(result):
            logger.warning("Drop %s was taken over by another scanner before it finished; leaving it.", drop.id)
            return
        if finish.status is not DropStatus.SUBMITTED:
            logger.info("Drop %s: %s is %s: %s", drop.id, group.video.key, finish.status.value, finish.error_message)
        await self._file(group, destination, finish.error_message)

    async def _refile(self, drop: Drop, group: DropGroup, report: ScanReport) -> None:
        """Deal with a finished drop whose file is still in the pending area.

        Either filing it away was interrupted, and is finished now, or the same bytes were
        dropped again under the same name (S3 gives equal content an equal ETag), which makes
        the new copy a duplicate.
        """
        modified, finished = group.video.modified, drop.finished_at
        if drop.status == DropStatus.SUBMITTED and modified and finished and modified > finished:
            destination = await self._destination(DUPLICATES_AREA, drop, drop.key)
            logger.info("Drop %s: %s was dropped again unchanged; filing it to %s.", drop.id, drop.key, destination)
            reason = f"The same content was already taken as video {drop.video_id}."
            await self._file(group, destination, reason)
            report.duplicates += 1
            return
        destination = drop.moved_to or await self._destination(_AREA_OF[DropStatus(drop.status)], drop, drop.key)
        message = drop.error_message if drop.status != DropStatus.SUBMITTED else None
        logger.info("Drop %s: %s was finished but not filed away; filing it to %s.", drop.id, drop.key, destination)
        await self._file(group, destination, message)

    async def _destination(self, area: str, drop: Drop, key: str) -> str:
        day = self._clock().date().isoformat()
        candidate = filed_key(area, day, key)
        if await self.drops.exists(candidate):
            # An earlier drop of the same name was filed today; keep both.
            candidate = filed_key(area, day, f"{drop.id.hex[:8]}/{key}")
        return candidate

    async def _file(self, group: DropGroup, destination: str, reason: str | None) -> None:
        """Move the video and its sidecars next to ``destination``, with the reason beside a refused file."""
        folder = str(PurePosixPath(destination).parent)
        for obj in group.objects:
            target = f"{folder}/{PurePosixPath(obj.key).name}"
            try:
                await self._move(obj.key, target)
            except ObjectMissing:
                # Another scanner filing the same finished drop moved it first.
                logger.debug("Drop object %s was already moved away; nothing to file.", obj.key)
        if reason:
            await self.drops.put_bytes(f"{destination}.error.txt", (reason + "\n").encode(), "text/plain")

    async def _move(self, key: str, target: str) -> None:
        # A copy inside the drop store (on S3 made by the server, so a lecture's bytes are not
        # uploaded again), then the original goes. ObjectMissing when another scanner moved it.
        await self.drops.copy(key, target)
        await self.drops.delete(key)


@dataclass(frozen=True)
class _Original:
    video_id: uuid.UUID | None
    label: str


def _fingerprint(obj: StoredObject) -> str:
    if obj.etag:
        return obj.etag[:200]
    stamp = obj.modified.isoformat() if obj.modified else "-"
    return f"{obj.size}@{stamp}"


def _new_drop(video: StoredObject, now: datetime) -> Drop:
    return Drop(
        id=uuid.uuid4(),
        key=video.key,
        fingerprint=_fingerprint(video),
        size=video.size,
        mtime=video.modified,
        status=DropStatus.SETTLING,
        first_seen_at=now,
        last_changed_at=now,
    )


def _absorb(out: IO[bytes], digest: Any, chunk: bytes) -> None:
    digest.update(chunk)
    out.write(chunk)


def _changed(result: Any) -> bool:
    return bool(cast(CursorResult[Any], result).rowcount)


async def _commit_or_back_off(session: AsyncSession, what: str) -> bool:
    """Commit; when a unique key refuses it, another scanner got there first and this one backs off."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        logger.debug("Another scanner recorded %s first; this one backs off.", what)
        return False
    return True
