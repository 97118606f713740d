"""Read an uploaded subtitle file of any supported format into a :class:`SubtitleDocument`.

The format is taken from the content (a ``WEBVTT`` signature, SRT ``-->`` timing lines with
comma milliseconds, SBV ``start,end`` lines); the file name only breaks ties and explains a
WebVTT file whose header is missing. Every rejection carries a ``subtitles.*`` code and a
sentence a content editor can act on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from pipeline.errors import SubtitleError
from pipeline.subtitles.encoding import decode_subtitle_bytes
from pipeline.subtitles.models import Cue, Region, SubtitleDocument
from pipeline.subtitles.srt_sbv import looks_like_sbv, looks_like_srt, parse_sbv, parse_srt
from pipeline.subtitles.vtt_parser import SIGNATURE, parse_webvtt

logger = logging.getLogger(__name__)

_Parsed = tuple[list[Cue], list[Region], list[str]]

# Files people upload by mistake: named so the message says what the file actually is.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or Office document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x1a\x45\xdf\xa3", "a Matroska or WebM video"),
    (b"OggS", "an Ogg media file"),
    (b"ID3", "an MP3 audio file"),
    (b"RIFF", "a RIFF media file (WAV or AVI)"),
)

_FORMAT_NAMES = {"webvtt": "WebVTT", "srt": "SRT", "sbv": "SBV"}


def parse_subtitles(data: bytes, filename: str | None = None) -> SubtitleDocument:
    """Read a WebVTT, SRT or SBV file, keeping every valid cue and skipping damaged blocks.

    Args:
        data: The file's bytes, in any encoding :func:`decode_subtitle_bytes` recognises.
        filename: The uploaded file's name; its extension is only a hint.

    Returns:
        The document, with one warning per skipped or repaired block.

    Raises:
        SubtitleError: ``subtitles.empty``, ``subtitles.bad_encoding``,
            ``subtitles.unrecognised_format`` or ``subtitles.no_cues``.
    """
    _reject_empty(data)
    _reject_known_binary(data)
    raw_text, encoding = decode_subtitle_bytes(data)
    text, warnings = _normalise(raw_text)
    _reject_empty(text.strip())

    fmt, sniff_warnings = sniff_format(text, filename)
    cues, regions, parse_warnings = _READERS[fmt](text)
    warnings += sniff_warnings + parse_warnings
    if not cues:
        raise SubtitleError(_no_cues_message(fmt, parse_warnings), code="subtitles.no_cues")

    logger.info(
        "Read %s subtitles %s (%s): %d cues kept, %d warnings.",
        _FORMAT_NAMES[fmt],
        filename or "(unnamed)",
        encoding,
        len(cues),
        len(warnings),
    )
    return SubtitleDocument(format=fmt, encoding=encoding, cues=cues, warnings=warnings, regions=regions)


def sniff_format(text: str, filename: str | None = None) -> tuple[str, list[str]]:
    """Tell the format of subtitle text from its content.

    Args:
        text: The decoded text with LF line breaks.
        filename: Used only to prefer SBV for ``.sbv`` files and to explain a ``.vtt`` file
            without a header.

    Returns:
        ``"webvtt"``, ``"srt"`` or ``"sbv"``, and warnings about how the file was taken.

    Raises:
        SubtitleError: ``subtitles.unrecognised_format`` when it is no subtitle format.
    """
    if SIGNATURE.match(text):
        return "webvtt", []
    extension = (filename or "").rsplit(".", 1)[-1].lower()
    checks = [("srt", looks_like_srt), ("sbv", looks_like_sbv)]
    if extension == "sbv":
        checks.reverse()
    for fmt, looks_like in checks:
        if looks_like(text):
            return fmt, _missing_header_warning(fmt, extension)
    raise SubtitleError(
        "This file is not a subtitle file: it has no WEBVTT header and no SRT or SBV timing lines.",
        code="subtitles.unrecognised_format",
    )


def _missing_header_warning(fmt: str, extension: str) -> list[str]:
    if extension != "vtt":
        return []
    name = _FORMAT_NAMES[fmt]
    return [f"The file is named .vtt but has no WEBVTT header line; its cues were read as {name}."]


def _reject_empty(data: bytes | str) -> None:
    if not data:
        raise SubtitleError("The subtitle file is empty; upload it again.", code="subtitles.empty")


def _reject_known_binary(data: bytes) -> None:
    for signature, description in _BINARY_SIGNATURES:
        if data.startswith(signature):
            raise SubtitleError(
                f"This file is {description}, not a subtitle file. Upload a WebVTT (.vtt), SRT (.srt) "
                "or SBV (.sbv) file.",
                code="subtitles.unrecognised_format",
            )
    # MP4 and QuickTime files name their brand at bytes 4-8 rather than at the start.
    if data[4:8] == b"ftyp":
        raise SubtitleError(
            "This file is an MP4 or QuickTime video, not a subtitle file. Upload a WebVTT (.vtt), "
            "SRT (.srt) or SBV (.sbv) file.",
            code="subtitles.unrecognised_format",
        )


def _normalise(text: str) -> tuple[str, list[str]]:
    """Apply WebVTT's preprocessing to any format: LF line breaks, NULs replaced by U+FFFD."""
    text = re.sub(r"\r\n?", "\n", text)
    nuls = text.count("\0")
    if not nuls:
        return text, []
    warning = f"Replaced {nuls} NUL character{'s' if nuls > 1 else ''} with U+FFFD."
    return text.replace("\0", "\ufffd"), [warning]


def _no_cues_message(fmt: str, warnings: list[str]) -> str:
    message = f"This {_FORMAT_NAMES[fmt]} file has no cue that can be shown"
    if not warnings:
        return f"{message}: it contains no timed text."
    return f"{message}: every timed block is damaged. The first problem is at {warnings[0]}"


def _read_webvtt(text: str) -> _Parsed:
    result = parse_webvtt(text)
    return result.cues, result.regions, result.warnings


def _read_srt(text: str) -> _Parsed:
    cues, warnings = parse_srt(text)
    return cues, [], warnings


def _read_sbv(text: str) -> _Parsed:
    cues, warnings = parse_sbv(text)
    return cues, [], warnings


_READERS: dict[str, Callable[[str], _Parsed]] = {"webvtt": _read_webvtt, "srt": _read_srt, "sbv": _read_sbv}
