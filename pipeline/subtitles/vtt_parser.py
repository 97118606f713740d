"""A WebVTT reader that treats each block the way browsers do.

webvtt-py is not used for WebVTT, because its answers differ from a browser's on the files
that matter most, the damaged ones: it raises on a missing header instead of reporting it,
silently drops malformed cues so nobody learns what was lost, and accepts timestamps that
browsers reject (one-digit fields, short fractions), so a file that plays here could show
fewer cues in the player. This module follows the block level of the WebVTT file parsing
algorithm (W3C WebVTT, section "WebVTT file parsing"): signature line, optional header,
blocks separated by blank lines, a block is a cue only when its first or second line is a
valid timing line, ``NOTE``, ``STYLE`` and ``REGION`` blocks are not cues. Every skipped
block and every ignored cue setting leaves a warning naming its line.

The text is expected with line breaks already normalised to LF and NULs replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.errors import SubtitleError
from pipeline.subtitles.models import Cue, Region
from pipeline.subtitles.vtt_settings import parse_cue_settings, parse_region_settings

SIGNATURE = re.compile(r"WEBVTT(?:[ \t\n]|$)")

# [hours:]minutes:seconds.fraction; which field comes first is settled in _to_milliseconds.
_TIMESTAMP = re.compile(r"([0-9]+):([0-9]{2})(?::([0-9]{2}))?\.([0-9]{3})(?![0-9])")
_WHITESPACE = " \t\n\f\r"
_STYLE_HEADER = re.compile(r"STYLE[ \t]*")
_REGION_HEADER = re.compile(r"REGION[ \t]*")
_NOTE_HEADER = re.compile(r"NOTE(?:[ \t]|$)")


@dataclass
class WebVTTResult:
    """The cues, regions and warnings read from one WebVTT text."""

    cues: list[Cue] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _TimingError(Exception):
    """A timing line that browsers reject; the message says why, for the warning."""


@dataclass
class _Block:
    first_line: int
    lines: list[str] = field(default_factory=list)
    kind: str = "text"
    """``cue``, ``style``, ``region`` or ``text`` (anything else, including comments)."""
    identifier: str = ""
    timing: tuple[int, int, str] | None = None
    timing_error: str = ""
    timing_line: int = 0


def parse_webvtt(text: str) -> WebVTTResult:
    """Read WebVTT text into cues, keeping what a browser keeps.

    Args:
        text: The file's text, LF line breaks only, NULs already replaced by U+FFFD.

    Returns:
        The cues and regions, plus one warning per skipped block or ignored setting.

    Raises:
        SubtitleError: ``subtitles.unrecognised_format`` when the signature line is missing.
    """
    if not SIGNATURE.match(text):
        raise SubtitleError(
            "This file is not a WebVTT file: its first line must start with WEBVTT.",
            code="subtitles.unrecognised_format",
        )
    return _Reader(text.split("\n")).read()


class _Reader:
    """Walks the lines once, block by block, as the parsing algorithm prescribes."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.pos = 1
        self.seen_cue = False
        self.result = WebVTTResult()

    def read(self) -> WebVTTResult:
        if self.pos < len(self.lines) and self.lines[self.pos]:
            self._collect_block(in_header=True)
        self._skip_blank_lines()
        while self.pos < len(self.lines):
            self._handle(self._collect_block(in_header=False))
            self._skip_blank_lines()
        return self.result

    def _skip_blank_lines(self) -> None:
        while self.pos < len(self.lines) and not self.lines[self.pos]:
            self.pos += 1

    def _collect_block(self, *, in_header: bool) -> _Block:
        block = _Block(first_line=self.pos + 1)
        seen_arrow = False
        while self.pos < len(self.lines):
            line = self.lines[self.pos]
            self.pos += 1
            line_count = self.pos - block.first_line + 1
            if "-->" in line:
                if in_header or not (line_count == 1 or (line_count == 2 and not seen_arrow)):
                    # A timing line starts the next block, even without a blank line before it.
                    self.pos -= 1
                    break
                seen_arrow = True
                self._read_timing(block, line)
            elif not line:
                break
            else:
                if line_count == 2 and not self.seen_cue:
                    self._detect_definition(block)
                block.lines.append(line)
        return block

    def _read_timing(self, block: _Block, line: str) -> None:
        block.timing_line = self.pos
        try:
            block.timing = _parse_timing_line(line)
        except _TimingError as exc:
            block.timing_error = str(exc)
            return
        block.kind = "cue"
        block.identifier = "\n".join(block.lines)
        block.lines = []
        self.seen_cue = True

    def _detect_definition(self, block: _Block) -> None:
        # STYLE and REGION only count before the first cue, and only as a whole first line.
        first = block.lines[0] if block.lines else ""
        for kind, pattern in (("style", _STYLE_HEADER), ("region", _REGION_HEADER)):
            if pattern.fullmatch(first):
                block.kind = kind
                block.lines = []

    def _handle(self, block: _Block) -> None:
        if block.kind == "cue":
            self._add_cue(block)
        elif block.kind == "region":
            self._add_region(block)
        elif block.timing_error:
            self._warn(block.timing_line, f"skipped a cue with an invalid timing line: {block.timing_error}")
        elif block.kind == "text":
            self._warn_about_text(block)

    def _warn_about_text(self, block: _Block) -> None:
        first = block.lines[0] if block.lines else ""
        if _NOTE_HEADER.match(first):
            return
        if _STYLE_HEADER.fullmatch(first) or _REGION_HEADER.fullmatch(first):
            self._warn(block.first_line, "ignored a STYLE or REGION block that is empty or follows a cue")
        else:
            self._warn(block.first_line, "skipped a block of text that has no timing line")

    def _add_cue(self, block: _Block) -> None:
        assert block.timing is not None
        start_ms, end_ms, settings_text = block.timing
        region_ids = {region.identifier for region in self.result.regions}
        settings, ignored = parse_cue_settings(settings_text, region_ids)
        if ignored:
            quoted = ", ".join(f"'{token}'" for token in ignored)
            self._warn(block.timing_line, f"ignored the cue settings {quoted}, which are not valid")
        cue = Cue(
            start=start_ms / 1000,
            end=end_ms / 1000,
            text="\n".join(block.lines),
            identifier=block.identifier,
            settings=settings,
        )
        self.result.cues.append(cue)

    def _add_region(self, block: _Block) -> None:
        identifier, settings = parse_region_settings(block.lines)
        if not identifier:
            self._warn(block.first_line, "skipped a REGION block without an id")
            return
        self.result.regions.append(Region(identifier=identifier, settings=settings))

    def _warn(self, line_number: int, message: str) -> None:
        self.result.warnings.append(f"Line {line_number}: {message}.")


def _parse_timing_line(line: str) -> tuple[int, int, str]:
    """Read ``start --> end [settings]`` as browsers do.

    Returns:
        Start and end in milliseconds, and the text after the end timestamp (the settings).

    Raises:
        _TimingError: when either timestamp or the arrow is malformed.
    """
    pos = _skip_whitespace(line, 0)
    start, pos = _read_timestamp(line, pos)
    pos = _skip_whitespace(line, pos)
    if not line.startswith("-->", pos):
        raise _TimingError(f"'{line.strip()}' has no '-->' right after the start time")
    pos = _skip_whitespace(line, pos + 3)
    end, pos = _read_timestamp(line, pos)
    return start, end, line[pos:]


def _skip_whitespace(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in _WHITESPACE:
        pos += 1
    return pos


def _read_timestamp(line: str, pos: int) -> tuple[int, int]:
    match = _TIMESTAMP.match(line, pos)
    milliseconds = _to_milliseconds(match) if match else None
    if match is None or milliseconds is None:
        token = re.split(r"[ \t\f]|-->", line[pos:], maxsplit=1)[0]
        raise _TimingError(f"the timestamp '{token}' is not valid")
    return milliseconds, match.end()


def _to_milliseconds(match: re.Match[str]) -> int | None:
    first, second, third, fraction = match.groups()
    # A first field that is not two digits, or over 59, can only be hours, and then the
    # seconds field must follow.
    first_is_hours = len(first) != 2 or int(first) > 59
    if first_is_hours and third is None:
        return None
    if third is None:
        hours, minutes, seconds = 0, int(first), int(second)
    else:
        hours, minutes, seconds = int(first), int(second), int(third)
    if minutes > 59 or seconds > 59:
        return None
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + int(fraction)
