"""WebVTT cue and region settings, read the way browsers read them.

Each setting is a ``name:value`` token; a token that is unknown or malformed is ignored on
its own and the others still apply, and a later valid setting replaces an earlier one. The
values kept are the valid ones as written, so a cue can be written back unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

_PERCENTAGE = re.compile(r"[0-9]+(?:\.[0-9]+)?%")
_LINE_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_WHITESPACE = re.compile(r"[ \t\n\f\r]+")

_ALIGNS = frozenset({"start", "center", "end", "left", "right"})
_LINE_ALIGNS = frozenset({"start", "center", "end"})
_POSITION_ALIGNS = frozenset({"line-left", "center", "line-right"})


def split_setting(token: str) -> tuple[str, str] | None:
    """Split a ``name:value`` token; None when the colon is missing, first or last."""
    name, colon, value = token.partition(":")
    return (name, value) if colon and name and value else None


def parse_cue_settings(text: str, region_ids: set[str]) -> tuple[dict[str, str], list[str]]:
    """Read the settings after a cue's timestamps.

    Args:
        text: What follows the end timestamp on the timing line.
        region_ids: Identifiers of the regions defined in the file's header.

    Returns:
        The valid settings, and the tokens that were ignored.
    """
    settings: dict[str, str] = {}
    ignored: list[str] = []
    for token in _tokens(text):
        setting = _check_cue_setting(token, region_ids)
        if setting is None:
            ignored.append(token)
        else:
            settings[setting[0]] = setting[1]
    return settings, ignored


def _check_cue_setting(token: str, region_ids: set[str]) -> tuple[str, str] | None:
    split = split_setting(token)
    if split is None:
        return None
    name, value = split
    if name == "region":
        return (name, value) if value in region_ids else None
    check = _CUE_CHECKS.get(name)
    valid = check(value) if check else None
    return None if valid is None else (name, valid)


def parse_region_settings(lines: list[str]) -> tuple[str, dict[str, str]]:
    """Read the settings of a ``REGION`` block.

    Returns:
        The region identifier (empty when none was given) and its other valid settings.
    """
    identifier = ""
    settings: dict[str, str] = {}
    for token in _tokens(" ".join(lines)):
        split = split_setting(token)
        if split is None:
            continue
        name, value = split
        if name == "id":
            if "-->" not in value:
                identifier = value
            continue
        check = _REGION_CHECKS.get(name)
        valid = check(value) if check else None
        if valid is not None:
            settings[name] = valid
    return identifier, settings


def _tokens(text: str) -> list[str]:
    return [token for token in _WHITESPACE.split(text) if token]


def is_percentage(value: str) -> bool:
    """Whether ``value`` is a WebVTT percentage between 0% and 100%."""
    return bool(_PERCENTAGE.fullmatch(value)) and float(value[:-1]) <= 100


def _keyword(allowed: frozenset[str]) -> Callable[[str], str | None]:
    return lambda value: value if value in allowed else None


def _percentage(value: str) -> str | None:
    return value if is_percentage(value) else None


def _line(value: str) -> str | None:
    # This older revision of the conformance suite keeps the line position when only the
    # alignment after the comma is unknown; the alignment then falls back to its default.
    position, comma, align = value.partition(",")
    if position.endswith("%"):
        valid = is_percentage(position)
    else:
        valid = bool(_LINE_NUMBER.fullmatch(position)) and math.isfinite(float(position))
    if not valid:
        return None
    return f"{position},{align}" if comma and align in _LINE_ALIGNS else position


def _position(value: str) -> str | None:
    position, comma, align = value.partition(",")
    if not is_percentage(position):
        return None
    return f"{position},{align}" if comma and align in _POSITION_ALIGNS else position


def _lines(value: str) -> str | None:
    return value if value.isascii() and value.isdigit() else None


def _anchor(value: str) -> str | None:
    x, comma, y = value.partition(",")
    return value if comma and is_percentage(x) and is_percentage(y) else None


_CUE_CHECKS: dict[str, Callable[[str], str | None]] = {
    "vertical": _keyword(frozenset({"rl", "lr"})),
    "line": _line,
    "position": _position,
    "size": _percentage,
    "align": _keyword(_ALIGNS),
}

_REGION_CHECKS: dict[str, Callable[[str], str | None]] = {
    "width": _percentage,
    "lines": _lines,
    "regionanchor": _anchor,
    "viewportanchor": _anchor,
    "scroll": _keyword(frozenset({"up"})),
}
