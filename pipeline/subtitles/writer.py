"""Write subtitle documents as normalised WebVTT, the one format the player is given."""

from __future__ import annotations

from pipeline.subtitles.models import Cue, Region, SubtitleDocument


def to_webvtt(doc: SubtitleDocument) -> str:
    """Write a document as WebVTT.

    Regions, cue identifiers, valid cue settings and cue markup are kept; timestamps are
    written as ``HH:MM:SS.mmm``. Blank lines inside a cue's text (possible in SRT) are dropped
    and ``-->`` in text is escaped, as either would end the cue when the file is read again.

    Args:
        doc: The document to write.

    Returns:
        The WebVTT text, starting with ``WEBVTT`` and a blank line.
    """
    blocks = [*(_region_block(region) for region in doc.regions), *(_cue_block(cue) for cue in doc.cues)]
    return "WEBVTT\n\n" + "".join(f"{block}\n\n" for block in blocks)


def format_timestamp(seconds: float) -> str:
    """Format seconds as a WebVTT timestamp, e.g. ``01:02:03.004``."""
    milliseconds = round(seconds * 1000)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _region_block(region: Region) -> str:
    settings = [f"{name}:{value}" for name, value in region.settings.items()]
    return "\n".join(["REGION", f"id:{region.identifier}", *settings])


def _cue_block(cue: Cue) -> str:
    lines = []
    # An identifier holding an arrow would be read back as a timing line, so it is dropped.
    if cue.identifier and "-->" not in cue.identifier:
        lines.append(cue.identifier)
    timing = f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}"
    settings = " ".join(f"{name}:{value}" for name, value in cue.settings.items())
    lines.append(f"{timing} {settings}" if settings else timing)
    lines.extend(line.replace("-->", "--&gt;") for line in cue.text.split("\n") if line)
    return "\n".join(lines)
