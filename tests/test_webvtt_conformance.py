"""The WebVTT reader against the web-platform-tests file-parsing cases in ``shared/conformance``.

Each ``NAME.vtt`` is parsed through :func:`parse_subtitles` and compared with what a browser's
``VTTCue`` objects report for it (``NAME.expected.json``): the cue count, and per cue every
asserted property. The files are read in place, never copied into the repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.subtitles import Cue, Region, parse_subtitles


def _conformance_dir() -> Path | None:
    # Locally shared/ sits beside the repository; in CI the repository is cloned elsewhere
    # with shared/ beside the clone, which a symlinked checkout only shows unresolved.
    here = Path(__file__)
    candidates = [
        here.resolve().parents[2] / "shared",
        Path(os.path.abspath(here)).parents[2] / "shared",
        Path.cwd().parent / "shared",
    ]
    for shared in candidates:
        webvtt = shared / "conformance" / "webvtt"
        if webvtt.is_dir():
            return webvtt
    return None


CONFORMANCE_DIR = _conformance_dir()


def _cases() -> list[Any]:
    if CONFORMANCE_DIR is None:
        reason = "shared/conformance/webvtt was not found beside the repository; the cases are not vendored"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-conformance-data")]
    params = []
    for vtt in sorted(CONFORMANCE_DIR.glob("*.vtt")):
        expected = json.loads(vtt.with_suffix(".expected.json").read_text(encoding="utf-8"))
        marks = []
        if expected.get("unsure"):
            reason = expected.get("reason", "the expectations could not be transcribed exactly")
            marks.append(pytest.mark.xfail(reason=reason, strict=False))
        params.append(pytest.param(vtt.name, marks=marks, id=vtt.stem))
    return params


def _percent(value: str) -> float:
    return float(value.rstrip("%"))


def _line_properties(value: str | None) -> dict[str, Any]:
    if value is None:
        return {"line": "auto", "snapToLines": True, "lineAlign": "start"}
    position, _, align = value.partition(",")
    return {
        "line": _percent(position),
        "snapToLines": not position.endswith("%"),
        "lineAlign": align or "start",
    }


def _position_properties(value: str | None) -> dict[str, Any]:
    if value is None:
        return {"position": "auto", "positionAlign": "auto"}
    position, _, align = value.partition(",")
    return {"position": _percent(position), "positionAlign": align or "auto"}


def _region_properties(identifier: str | None, regions: list[Region]) -> dict[str, Any] | None:
    # The last region with the id wins, as the parser keeps them in file order.
    matches = [region for region in regions if region.identifier == identifier]
    if identifier is None or not matches:
        return None
    settings = matches[-1].settings
    region_x, _, region_y = settings.get("regionanchor", "0%,100%").partition(",")
    viewport_x, _, viewport_y = settings.get("viewportanchor", "0%,100%").partition(",")
    return {
        "id": identifier,
        "width": _percent(settings.get("width", "100%")),
        "lines": int(settings.get("lines", "3")),
        "regionAnchorX": _percent(region_x),
        "regionAnchorY": _percent(region_y),
        "viewportAnchorX": _percent(viewport_x),
        "viewportAnchorY": _percent(viewport_y),
        "scroll": settings.get("scroll", ""),
    }


def vttcue_properties(cue: Cue, regions: list[Region]) -> dict[str, Any]:
    """What a browser's VTTCue would report for the cue, defaults included."""
    settings = cue.settings
    return {
        "id": cue.identifier,
        "text": cue.text,
        "start": cue.start,
        "end": cue.end,
        "align": settings.get("align", "center"),
        "vertical": settings.get("vertical", ""),
        "size": _percent(settings.get("size", "100%")),
        **_line_properties(settings.get("line")),
        **_position_properties(settings.get("position")),
        "region": _region_properties(settings.get("region"), regions),
    }


def _assert_matches(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    for name, want in expected.items():
        got = actual[name]
        if name == "region" and isinstance(want, dict):
            assert got is not None, f"{where}: region is null, expected {want}"
            _assert_matches(got, want, f"{where} region")
        else:
            assert got == want, f"{where}: {name} is {got!r}, expected {want!r}"


@pytest.mark.parametrize("name", _cases())
def test_parser_keeps_the_cues_a_browser_keeps(name: str) -> None:
    assert CONFORMANCE_DIR is not None
    vtt = CONFORMANCE_DIR / name
    expected = json.loads(vtt.with_suffix(".expected.json").read_text(encoding="utf-8"))

    doc = parse_subtitles(vtt.read_bytes(), filename=name)

    assert doc.format == "webvtt"
    assert len(doc.cues) == expected["count"]
    for index, (cue, want) in enumerate(zip(doc.cues, expected["cues"], strict=True)):
        _assert_matches(vttcue_properties(cue, doc.regions), want, f"cue {index}")
