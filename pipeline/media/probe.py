"""Reading what an uploaded file holds, and rejecting what is not a playable video.

The probe runs in process with PyAV (no ffprobe child) and reads only what it needs: the
container header, a few packets and one decoded frame at the start, and a few packets near
the claimed end. A 60 s 720p clip takes about 10 ms; the cost does not grow with the length
of the video (except for containers that claim no length, see below).

Rejections are :class:`~pipeline.errors.MediaError` with a stable code, checked in this
order (the first that applies wins):

1. ``media.empty_file``: the file has no bytes.
2. ``media.unrecognised_format``: FFmpeg cannot open it (text, a PDF, random bytes), opens
   it only as text rendered into pictures (FFmpeg's reader for ``.txt`` and ANSI art), or it
   opens but holds neither sound nor pictures (a subtitle file, for instance). A file that
   cannot be opened but starts like an MP4/MOV or Matroska/WebM file is ``media.truncated``
   instead: an MP4 whose index sits at its end loses that index when cut short.
3. ``media.still_image``: a picture format (PNG, JPEG, ...) whatever its file name, or a
   video stream holding a single frame (a one-frame MP4 is a picture too; it is recognised
   at step 5's read of the first packets, before the duration is judged).
4. ``media.no_video_stream``: sound only. Cover art attached to an audio file does not count
   as video.
5. ``media.zero_duration``: the container claims no length (or 0) and holds no frames; or
   claims none and its packets carry no timestamps to measure one (a raw H.264 stream). A
   container that claims no length but has timestamps (a live-written WebM/MKV, as browsers
   record) is measured instead, by demuxing its packets.
6. ``media.truncated``: the container claims more than the file holds. The probe seeks to a
   point just before the claimed end and demuxes (without decoding) a few packets; if the
   file ends before any packet reaches that point, the end is missing. A video whose header
   promises frames but whose data holds none is truncated too.
7. ``media.undecodable``: no frame can be decoded from the first packets of the video.

Truncation is checked before decoding so that a file cut inside its first frame is reported
as cut short, which is what the content editor can fix, rather than as corrupted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from pipeline.errors import MediaError

logger = logging.getLogger(__name__)

_FIRST_FRAME_PACKET_BUDGET = 64
"""Packets demuxed at the start to get one frame out of the decoder; decoders hold back a
few frames (B-frame reordering, frame threads), and corrupt data is skipped packet by packet."""
_TAIL_PACKET_BUDGET = 500
"""Packets demuxed near the claimed end before concluding the data is there."""
_SNIFF_BYTES = 64
_TEXT_DEMUXERS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
"""FFmpeg renders a text file named ``.txt`` (and ANSI art) as a video of its characters."""
_IMAGE_DEMUXER_SUFFIX = "_pipe"
_IMAGE_DEMUXERS = frozenset({"image2"})
"""With the ``*_pipe`` demuxers, FFmpeg's readers of single pictures (PNG, JPEG, WebP, ...).
GIF is left to the frame count: an animated GIF is a (silent) video."""
_ISO_BMFF_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"styp", b"pnot"})
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"


@dataclass(frozen=True)
class SubtitleStream:
    """A text track embedded in the container."""

    index: int
    """The stream's absolute index in the container (the ``N`` of ``-map 0:N``)."""
    codec: str
    """FFmpeg's codec name: ``subrip``, ``ass``, ``webvtt``, ``mov_text``, ..."""
    language: str | None
    """The container's language tag (``kor``, ``eng``); ``None`` when absent or ``und``."""
    title: str | None


@dataclass(frozen=True)
class ProbeResult:
    """The facts about a playable video that the pipeline records and works from."""

    container: str
    """FFmpeg's demuxer name, e.g. ``mov,mp4,m4a,3gp,3g2,mj2`` or ``matroska,webm``."""
    duration: float
    """Seconds, as the container claims it (the longest stream)."""
    width: int
    """Coded picture width, before rotation and pixel aspect correction."""
    height: int
    display_width: int
    """The width a player shows: pixel aspect ratio applied, then 90/270 rotation swapped."""
    display_height: int
    rotation: int
    """Counter-clockwise degrees a player turns the picture (as ffmpeg's
    ``-display_rotation`` counts them): 0, 90, 180 or 270."""
    frame_rate: float | None
    """Average frames per second; ``None`` when the container does not say."""
    video_codec: str
    audio_codec: str | None
    bit_rate: int | None
    """Overall bits per second, when known."""
    has_audio: bool
    subtitle_streams: list[SubtitleStream]


@dataclass(frozen=True)
class _Opening:
    """What the start of the video stream showed."""

    packets: int
    """Video packets seen, counted up to 2 (enough to tell a still from a video)."""
    reached_end: bool
    """The file ended while reading them."""
    frame: VideoFrame | None


def probe(path: Path) -> ProbeResult:
    """Read a media file's facts, or say why it is not a playable video.

    Synchronous and in process; callers on an event loop run it in a thread.

    Args:
        path: a local file.

    Returns:
        The container, stream and display facts.

    Raises:
        MediaError: a rejection whose ``code`` is one of those listed in this module's
            docstring.
        OSError: the file cannot be read at all (missing, permission denied).
    """
    started = time.perf_counter()
    path = Path(path)
    if path.stat().st_size == 0:
        raise MediaError(f"The file {path.name} is empty (0 bytes).", code="media.empty_file")

    container = _open(path)
    try:
        result = _inspect(container, path)
    finally:
        container.close()
    elapsed_ms = (time.perf_counter() - started) * 1000
    logger.debug(
        "Probed %s in %.1f ms: %s %sx%s.",
        path.name,
        elapsed_ms,
        result.video_codec,
        result.display_width,
        result.display_height,
    )
    return result


def _open(path: Path) -> InputContainer:
    """Open the container, telling a file cut short from one that is not media at all."""
    try:
        # "file:" keeps FFmpeg from reading a colon in the name as a protocol.
        return av.open(f"file:{path.resolve()}", mode="r")
    except av.error.FFmpegError as exc:
        if _starts_like_video_container(path):
            raise MediaError(
                f"The file {path.name} looks like a video but could not be opened: it seems to have "
                "been cut short (for example an interrupted upload or recording). Please upload it again.",
                code="media.truncated",
            ) from exc
        raise MediaError(
            f"The file {path.name} is not a video file (its format was not recognised).",
            code="media.unrecognised_format",
        ) from exc


def _starts_like_video_container(path: Path) -> bool:
    """Whether the first bytes are an MP4/MOV box or a Matroska/WebM header.

    FFmpeg cannot open such a file when its index was lost, which in practice means the
    file was cut short (an MP4 written without "faststart" keeps its index at the end).
    """
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    return head[4:8] in _ISO_BMFF_BOXES or head.startswith(_EBML_MAGIC)


def _inspect(container: InputContainer, path: Path) -> ProbeResult:
    """Apply the rejections in order and collect the facts of an accepted video."""
    video = _video_stream(container, path)
    claimed = _claimed_duration(container, video)
    opening = _read_opening(container, video)
    if opening.packets == 1 and opening.reached_end:
        raise _still_image(path)
    if opening.packets == 0 and claimed <= 0:
        raise MediaError(f"The video {path.name} has no length and no pictures.", code="media.zero_duration")
    if opening.packets == 0 or (claimed > 0 and not _data_reaches(container, claimed)):
        raise MediaError(
            f"The video {path.name} is incomplete: the file ends before the video does. It was "
            "probably cut short during upload or recording; please upload the complete file.",
            code="media.truncated",
        )

    duration = claimed if claimed > 0 else _measured_duration(container, path)
    if opening.frame is None:
        raise MediaError(
            f"The pictures in {path.name} cannot be decoded; the file may be damaged or use an "
            "unsupported video format.",
            code="media.undecodable",
        )
    return _result(container, video, duration, opening.frame)


def _still_image(path: Path) -> MediaError:
    return MediaError(
        f"The file {path.name} is a still image, not a video.",
        code="media.still_image",
    )


def _video_stream(container: InputContainer, path: Path) -> VideoStream:
    """The video stream to work from, or the rejection for a file without one."""
    if container.format.name in _TEXT_DEMUXERS:
        raise MediaError(
            f"The file {path.name} is a text file, not a video.",
            code="media.unrecognised_format",
        )
    if container.format.name in _IMAGE_DEMUXERS or container.format.name.endswith(_IMAGE_DEMUXER_SUFFIX):
        raise _still_image(path)

    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if videos:
        return videos[0]
    if container.streams.audio:
        raise MediaError(
            f"The file {path.name} contains only sound, no video.",
            code="media.no_video_stream",
        )
    raise MediaError(
        f"The file {path.name} contains neither video nor sound (its format was not recognised as a video).",
        code="media.unrecognised_format",
    )


def _claimed_duration(container: InputContainer, video: VideoStream) -> float:
    """Seconds the container claims (0.0 when it claims nothing)."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    if video.duration is not None and video.time_base is not None and video.duration > 0:
        return float(video.duration * video.time_base)
    return 0.0


def _read_opening(container: InputContainer, video: VideoStream) -> _Opening:
    """Demux the first video packets and decode until one frame comes out."""
    packets = 0
    frame: VideoFrame | None = None
    for packet in container.demux(video):
        if packet.size == 0:  # the demuxer's end-of-stream marker
            return _Opening(packets, True, frame or _flush(video))
        packets += 1
        frame = frame or _decode_one(video, packet)
        if (frame is not None and packets >= 2) or packets >= _FIRST_FRAME_PACKET_BUDGET:
            return _Opening(min(packets, 2), False, frame or _flush(video))
    return _Opening(min(packets, 2), True, frame)


def _decode_one(video: VideoStream, packet: av.Packet) -> VideoFrame | None:
    """The first frame this packet lets the decoder produce, skipping data it rejects."""
    try:
        frames = video.decode(packet)
    except av.error.FFmpegError:
        return None
    return frames[0] if frames else None


def _flush(video: VideoStream) -> VideoFrame | None:
    """Drain the decoder's held-back frames, for files with very few packets."""
    try:
        frames = video.decode(None)
    except av.error.FFmpegError:
        return None
    return frames[0] if frames else None


def _data_reaches(container: InputContainer, duration: float) -> bool:
    """Whether packets exist near the claimed end, found by seeking rather than reading through.

    Any stream counts, so a video whose sound runs a little longer than its pictures is
    not mistaken for a cut file. Packets are demuxed, never decoded.
    """
    start = container.start_time / av.time_base if container.start_time else 0.0
    margin = min(1.0, max(0.25, 0.05 * duration))
    target = start + max(0.0, duration - margin)
    try:
        container.seek(int(target * av.time_base), backward=True, any_frame=True)
    except av.error.FFmpegError:
        logger.debug("Seeking near the end failed; the data before %.2f s is missing.", target)
        return False

    try:
        for count, packet in enumerate(container.demux()):
            if _packet_end(packet) >= target:
                return True
            if count >= _TAIL_PACKET_BUDGET:
                # Plenty of data is there; a long stretch without keyframes is no evidence of a cut.
                return True
    except av.error.FFmpegError:
        return False
    return False


def _measured_duration(container: InputContainer, path: Path) -> float:
    """Seconds from the first packet to the end of the last, for containers that claim no length.

    Live-written Matroska/WebM (browser screen recordings, for example) carry no duration
    and often no index, so the only way to learn their length is to read their packets.
    Packets are demuxed, not decoded, so this costs a read of the file (about 10 ms per MB).

    Raises:
        MediaError: ``media.zero_duration`` when the packets carry no usable timestamps.
    """
    # TODO(probe-live-webm): reading every packet is linear in file size; a multi-GB
    # duration-less recording would be better measured by reading only its last clusters.
    logger.info("Container of %s claims no duration; measuring it from its packets.", path.name)
    first, last = float("inf"), float("-inf")
    try:
        container.seek(0)
        for packet in container.demux():
            end = _packet_end(packet)
            if end > float("-inf"):
                first = min(first, float(packet.pts * packet.time_base) if packet.pts is not None else end)
                last = max(last, end)
    except av.error.FFmpegError:
        # Raw elementary streams cannot seek and carry no timestamps to measure.
        last = float("-inf")
    if last <= first:
        raise MediaError(
            f"The video {path.name} does not say how long it is, and its length cannot be measured.",
            code="media.zero_duration",
        )
    return last - max(first, 0.0)


def _packet_end(packet: av.Packet) -> float:
    """The time in seconds at which a packet's content ends (-inf when it has no timestamp)."""
    stamp = packet.pts if packet.pts is not None else packet.dts
    if stamp is None or packet.time_base is None:
        return float("-inf")
    return float((stamp + (packet.duration or 0)) * packet.time_base)


def _result(container: InputContainer, video: VideoStream, duration: float, frame: VideoFrame) -> ProbeResult:
    """Collect the facts of an accepted video."""
    rotation = round(frame.rotation / 90) * 90 % 360
    display_width, display_height = _display_size(video, rotation)
    audio = container.streams.audio[0] if container.streams.audio else None
    return ProbeResult(
        container=container.format.name,
        duration=duration,
        width=video.codec_context.width,
        height=video.codec_context.height,
        display_width=display_width,
        display_height=display_height,
        rotation=rotation,
        frame_rate=_frame_rate(video),
        video_codec=video.codec.canonical_name,
        audio_codec=audio.codec.canonical_name if audio is not None else None,
        bit_rate=container.bit_rate or None,
        has_audio=audio is not None,
        subtitle_streams=[_subtitle(stream) for stream in container.streams.subtitles],
    )


def _display_size(video: VideoStream, rotation: int) -> tuple[int, int]:
    """Apply the pixel aspect ratio (stretching the width) and then the rotation."""
    width, height = video.codec_context.width, video.codec_context.height
    sar = video.sample_aspect_ratio
    if sar is not None and sar > 0 and sar != 1:
        width = round(width * sar / 2) * 2  # players and scalers want even sizes
    if rotation in (90, 270):
        return height, width
    return width, height


def _frame_rate(video: VideoStream) -> float | None:
    rate: Fraction | None = video.average_rate or video.guessed_rate
    return float(rate) if rate else None


def _subtitle(stream: av.stream.Stream) -> SubtitleStream:
    language = stream.metadata.get("language") or None
    return SubtitleStream(
        index=stream.index,
        codec=stream.codec.canonical_name,
        language=None if language == "und" else language,
        title=stream.metadata.get("title") or None,
    )
