"""SubRip (SRT) and YouTube (SBV) subtitles, read block by block with webvtt-py.

webvtt-py reads the timings and text of these formats well, including the lenient SRT
timestamps real files use (a dot instead of a comma, fields that carry over). Handed a whole
file, though, it rejects everything when the first block is damaged and silently drops bad
blocks later on. So the file is split into blocks here, each cue block is given to webvtt-py
on its own, and a block it cannot read is skipped with a warning naming its line.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import replace

import webvtt
from webvtt.errors import MalformedFileError

from pipeline.subtitles.models import Cue

logger = logging.getLogger(__name__)

_SRT_TIME = r"\d+:\d{1,2}:\d{1,2}[,.]\d+"
_SBV_TIME = r"\d+:\d{1,2}:\d{1,2}\.\d{3}"
SRT_TIMING = re.compile(rf"^[ \t]*{_SRT_TIME}[ \t]*-->[ \t]*{_SRT_TIME}", re.MULTILINE)
SBV_TIMING = re.compile(rf"^{_SBV_TIME},{_SBV_TIME}[ \t]*$", re.MULTILINE)
# A cue number over an arrow line marks SRT even when every timestamp in the file is damaged.
_SRT_NUMBERED_ARROW = re.compile(r"^[ \t]*\d+[ \t]*\n[^\n]*-->", re.MULTILINE)

_ReadBlock = Callable[[list[str]], "Cue | str"]


def looks_like_srt(text: str) -> bool:
    """Whether the text has SRT timing lines, or numbered blocks with ``-->`` lines."""
    return bool(SRT_TIMING.search(text) or _SRT_NUMBERED_ARROW.search(text))


def looks_like_sbv(text: str) -> bool:
    """Whether the text has SBV ``start,end`` timing lines."""
    return bool(SBV_TIMING.search(text))


def parse_srt(text: str) -> tuple[list[Cue], list[str]]:
    """Read SRT text (LF line breaks) into cues and warnings about skipped blocks."""
    return _parse_blocks(_split_srt_blocks(text), _is_srt_cue_start, _read_srt_cue)


def parse_sbv(text: str) -> tuple[list[Cue], list[str]]:
    """Read SBV text (LF line breaks) into cues and warnings about skipped blocks."""
    return _parse_blocks(_split_blocks(text), _is_sbv_cue_start, _read_sbv_cue)


def _parse_blocks(
    blocks: Iterator[tuple[int, list[str]]],
    is_cue_start: Callable[[list[str]], bool],
    read_cue: _ReadBlock,
) -> tuple[list[Cue], list[str]]:
    cues: list[Cue] = []
    warnings: list[str] = []
    # Some files have blank lines inside a cue's text: a block without timings that follows a
    # good cue continues it, as in webvtt-py and most players. After a skipped cue it is dropped.
    previous_kept = False
    for line_number, lines in blocks:
        if not is_cue_start(lines):
            if previous_kept:
                cues[-1] = replace(cues[-1], text="\n".join([cues[-1].text, *lines]))
            else:
                warnings.append(f"Line {line_number}: skipped a block of text that has no timing line.")
            continue
        result = read_cue(lines)
        previous_kept = isinstance(result, Cue)
        if isinstance(result, Cue):
            cues.append(result)
        else:
            warnings.append(f"Line {line_number}: skipped a cue {result}.")
    return cues, warnings


def _split_blocks(text: str) -> Iterator[tuple[int, list[str]]]:
    """Yield runs of non-blank lines with the 1-based number of their first line."""
    block: list[str] = []
    start = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            yield start, block
            block = []
    if block:
        yield start, block


def _split_srt_blocks(text: str) -> Iterator[tuple[int, list[str]]]:
    # A numbered timing line starts a new cue even when the blank line before it is missing.
    for start, lines in _split_blocks(text):
        first = 0
        for i in range(1, len(lines) - 1):
            if lines[i].strip().isdigit() and "-->" in lines[i + 1]:
                yield start + first, lines[first:i]
                first = i
        yield start + first, lines[first:]


def _is_srt_cue_start(lines: list[str]) -> bool:
    return "-->" in lines[0] or (len(lines) > 1 and lines[0].strip().isdigit() and "-->" in lines[1])


def _is_sbv_cue_start(lines: list[str]) -> bool:
    return bool(SBV_TIMING.match(lines[0]))


def _read_srt_cue(lines: list[str]) -> Cue | str:
    timing_index = 0 if "-->" in lines[0] else 1
    timing, payload = lines[timing_index], lines[timing_index + 1 :]
    if not payload:
        return "that has no text"
    # webvtt-py wants the cue number first; it is not kept, so any number does.
    return _read_with_webvtt(["1", timing, *payload], "srt", timing)


def _read_sbv_cue(lines: list[str]) -> Cue | str:
    if len(lines) < 2:
        return "that has no text"
    return _read_with_webvtt(lines, "sbv", lines[0])


def _read_with_webvtt(lines: list[str], fmt: str, timing: str) -> Cue | str:
    try:
        captions = webvtt.from_buffer(io.StringIO("\n".join(lines)), format=fmt).captions
    except MalformedFileError:
        captions = []
    if len(captions) != 1:
        logger.debug("webvtt-py could not read the %s timing line %r.", fmt, timing)
        return f"with an invalid timing line '{timing.strip()}'"
    caption = captions[0]
    return Cue(
        start=caption.start_time.in_milliseconds() / 1000,
        end=caption.end_time.in_milliseconds() / 1000,
        text=caption.raw_text,
    )
