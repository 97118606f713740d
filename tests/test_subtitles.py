"""Reading subtitle files in every supported format and encoding, and writing them as WebVTT."""

from __future__ import annotations

import codecs
import json
import random
from pathlib import Path

import pytest

from pipeline.errors import SubtitleError
from pipeline.subtitles import (
    Cue,
    SubtitleDocument,
    decode_subtitle_bytes,
    language_from_filename,
    parse_subtitles,
    to_webvtt,
)

KOREAN = "안녕하세요 여러분, 오늘은 고유값과 고유벡터를 배웁니다"

SRT = f"""1
00:00:01,000 --> 00:00:02,500
{KOREAN}

2
00:00:03,250 --> 00:00:04,000
<i>second</i> line
and more
"""

SBV = """0:00:01.000,0:00:02.000
Hello from SBV

0:00:03.500,0:00:05.000
second cue
"""

WEBVTT_WITH_BROKEN_CUE = """WEBVTT

intro
00:00:01.000 --> 00:00:02.000 align:start line:0
<v Bob>Hi &amp; welcome</v>

00:00:03.000 --> 00:00:xx.000
this cue has a broken end time

00:00:05.000 --> 00:00:06.000
<b>bold</b> words
"""


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        pytest.param(SRT.encode("utf-8"), "utf-8", id="utf-8"),
        pytest.param(codecs.BOM_UTF8 + SRT.encode("utf-8"), "utf-8", id="utf-8-bom"),
        pytest.param(codecs.BOM_UTF16_LE + SRT.encode("utf-16-le"), "utf-16-le", id="utf-16-le-bom"),
        pytest.param(codecs.BOM_UTF16_BE + SRT.encode("utf-16-be"), "utf-16-be", id="utf-16-be-bom"),
        pytest.param(SRT.encode("cp949"), "cp949", id="cp949"),
        pytest.param(SRT.encode("euc-kr"), "cp949", id="euc-kr"),
    ],
)
def test_korean_text_survives_every_supported_encoding(tmp_path: Path, data: bytes, encoding: str) -> None:
    path = _write(tmp_path, "lecture.ko.srt", data)

    doc = parse_subtitles(path.read_bytes(), path.name)

    assert doc.encoding == encoding
    assert doc.cues[0].text == KOREAN
    assert KOREAN in to_webvtt(doc)


def test_decoding_strips_the_byte_order_mark() -> None:
    text, encoding = decode_subtitle_bytes(codecs.BOM_UTF8 + b"WEBVTT\n")

    assert (text, encoding) == ("WEBVTT\n", "utf-8")


def test_decoding_prefers_cp949_for_short_korean_text() -> None:
    # Three syllables are too few for a general detector, which tends to guess Big5 here.
    text, encoding = decode_subtitle_bytes("고유값".encode("euc-kr"))

    assert (text, encoding) == ("고유값", "cp949")


def test_decoding_does_not_take_japanese_for_korean() -> None:
    japanese = "今日は固有値と固有ベクトルを学びます。よろしくお願いします。"

    text, _ = decode_subtitle_bytes(japanese.encode("shift_jis"))

    assert text == japanese


def test_srt_cues_are_read_with_comma_milliseconds_and_markup_kept() -> None:
    doc = parse_subtitles(SRT.encode(), "lecture.srt")

    assert doc.format == "srt"
    assert [(cue.start, cue.end) for cue in doc.cues] == [(1.0, 2.5), (3.25, 4.0)]
    assert doc.cues[1].text == "<i>second</i> line\nand more"
    assert doc.cues[1].plain_text == "second line and more"
    assert doc.warnings == []


def test_srt_with_a_damaged_block_keeps_the_others_and_warns() -> None:
    damaged = "1\n00:00:01,000 --> 00:00:02,000\nfirst\n\n2\n00:00:0x,000 --> 00:00:04,000\nlost\n\n"
    damaged += "3\n00:00:05,000 --> 00:00:06,000\nthird\n"

    doc = parse_subtitles(damaged.encode(), "damaged.srt")

    assert [cue.text for cue in doc.cues] == ["first", "third"]
    assert len(doc.warnings) == 1
    assert doc.warnings[0].startswith("Line 5:")


def test_srt_whose_first_block_is_damaged_is_still_read() -> None:
    damaged = "1\n00:00:xx,000 --> 00:00:02,000\nlost\n\n2\n00:00:03,000 --> 00:00:04,000\nkept\n"

    doc = parse_subtitles(damaged.encode(), "damaged.srt")

    assert [cue.text for cue in doc.cues] == ["kept"]
    assert len(doc.warnings) == 1


def test_sbv_cues_are_read() -> None:
    doc = parse_subtitles(SBV.encode(), "talk.sbv")

    assert doc.format == "sbv"
    assert [(cue.start, cue.end, cue.text) for cue in doc.cues] == [
        (1.0, 2.0, "Hello from SBV"),
        (3.5, 5.0, "second cue"),
    ]


def test_format_is_sniffed_from_content_not_the_extension() -> None:
    assert parse_subtitles(SRT.encode(), "wrong.vtt").format == "srt"
    assert parse_subtitles(SBV.encode(), "wrong.srt").format == "sbv"
    assert parse_subtitles(WEBVTT_WITH_BROKEN_CUE.encode(), "wrong.srt").format == "webvtt"


def test_a_vtt_file_without_header_is_read_as_srt_with_a_warning() -> None:
    doc = parse_subtitles(SRT.encode(), "lecture.vtt")

    assert any("no WEBVTT header" in warning for warning in doc.warnings)


def test_webvtt_broken_cue_is_skipped_with_a_warning_and_good_cues_kept() -> None:
    doc = parse_subtitles(WEBVTT_WITH_BROKEN_CUE.encode(), "lecture.vtt")

    assert doc.format == "webvtt"
    assert [cue.text for cue in doc.cues] == ["<v Bob>Hi &amp; welcome</v>", "<b>bold</b> words"]
    assert doc.cues[0].identifier == "intro"
    assert doc.cues[0].settings == {"align": "start", "line": "0"}
    assert doc.warnings == [
        "Line 7: skipped a cue with an invalid timing line: the timestamp '00:00:xx.000' is not valid."
    ]


def test_webvtt_invalid_settings_are_dropped_one_by_one_with_a_warning() -> None:
    data = b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000 align:middle size:50% vertical:up\ntext\n"

    doc = parse_subtitles(data)

    assert doc.cues[0].settings == {"size": "50%"}
    assert len(doc.warnings) == 1
    assert "'align:middle'" in doc.warnings[0]


def test_webvtt_crlf_and_nul_are_normalised() -> None:
    data = b"WEBVTT\r\n\r\n00:00:01.000 --> 00:00:02.000\r\na\x00b\r\n"

    doc = parse_subtitles(data)

    assert doc.cues[0].text == "a\ufffdb"
    assert doc.warnings == ["Replaced 1 NUL character with U+FFFD."]


def test_webvtt_cue_ending_before_it_starts_is_kept_like_browsers_do() -> None:
    doc = parse_subtitles(b"WEBVTT\n\n00:00:05.000 --> 00:00:01.000\nbackwards\n")

    assert (doc.cues[0].start, doc.cues[0].end) == (5.0, 1.0)


def test_webvtt_note_style_and_region_blocks_are_not_cues() -> None:
    data = (
        b"WEBVTT\n\nNOTE a comment\n\nSTYLE\n::cue { color: red }\n\nREGION\nid:fred width:40%\n\n"
        b"00:00:01.000 --> 00:00:02.000 region:fred\ntext\n"
    )

    doc = parse_subtitles(data)

    assert len(doc.cues) == 1
    assert doc.cues[0].settings == {"region": "fred"}
    assert doc.warnings == []


def test_plain_text_strips_markup_decodes_entities_and_collapses_whitespace() -> None:
    cue = Cue(start=0, end=1, text="<v Bob>Tom &amp; <i>Jerry</i></v>\n  &lt;3   <c.loud>yes</c>")

    assert cue.plain_text == "Tom & Jerry <3 yes"


def test_to_webvtt_keeps_markup_identifiers_and_settings() -> None:
    doc = parse_subtitles(WEBVTT_WITH_BROKEN_CUE.encode())

    output = to_webvtt(doc)

    assert output.startswith("WEBVTT\n\n")
    assert "intro\n00:00:01.000 --> 00:00:02.000 align:start line:0\n<v Bob>Hi &amp; welcome</v>\n" in output
    assert "<b>bold</b> words" in output


def test_to_webvtt_writes_long_timestamps_with_hours() -> None:
    doc = SubtitleDocument(format="srt", encoding="utf-8", cues=[Cue(3723.004, 36000.5, "late")], warnings=[])

    assert "01:02:03.004 --> 10:00:00.500" in to_webvtt(doc)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(WEBVTT_WITH_BROKEN_CUE.encode(), id="webvtt"),
        pytest.param(SRT.encode("cp949"), id="srt-cp949"),
        pytest.param(SBV.encode(), id="sbv"),
        pytest.param(
            b"WEBVTT\n\nREGION\nid:r1 width:50% scroll:up\n\n"
            b"00:00:00.001 --> 00:00:59.999 region:r1 position:10%,line-left\n"
            b"<c.yellow>a</c> &lt; b\n\n\n"
            b"x\n00:01:00.000 --> 01:00:00.000 vertical:rl\n\xec\x95\x88\xeb\x85\x95\n",
            id="webvtt-regions",
        ),
    ],
)
def test_to_webvtt_round_trip_gives_the_same_cues(source: bytes) -> None:
    doc = parse_subtitles(source)

    again = parse_subtitles(to_webvtt(doc).encode("utf-8"))

    assert again.format == "webvtt"
    assert [(c.start, c.end, c.identifier, c.settings, c.plain_text) for c in again.cues] == [
        (c.start, c.end, c.identifier, c.settings, c.plain_text) for c in doc.cues
    ]
    assert again.regions == doc.regions


def test_to_webvtt_round_trip_keeps_cue_text_exactly_for_webvtt() -> None:
    doc = parse_subtitles(WEBVTT_WITH_BROKEN_CUE.encode())

    assert parse_subtitles(to_webvtt(doc).encode()).cues == doc.cues


@pytest.mark.parametrize("data", [b"", b"  \n\n", codecs.BOM_UTF8])
def test_empty_file_is_rejected_as_empty(data: bytes) -> None:
    with pytest.raises(SubtitleError) as caught:
        parse_subtitles(data, "empty.vtt")

    assert caught.value.code == "subtitles.empty"


def test_png_is_rejected_as_not_a_subtitle_file() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"

    with pytest.raises(SubtitleError) as caught:
        parse_subtitles(png, "subtitles.vtt")

    assert caught.value.code == "subtitles.unrecognised_format"
    assert "PNG image" in caught.value.message


def test_json_file_is_rejected_as_not_a_subtitle_file() -> None:
    data = json.dumps({"cues": [{"start": 1, "end": 2, "text": "hi"}]}).encode()

    with pytest.raises(SubtitleError) as caught:
        parse_subtitles(data, "subtitles.json")

    assert caught.value.code == "subtitles.unrecognised_format"
    assert "no WEBVTT header and no SRT or SBV timing lines" in caught.value.message


def test_prose_is_rejected_as_not_a_subtitle_file() -> None:
    with pytest.raises(SubtitleError) as caught:
        parse_subtitles(b"Today we learn eigenvalues.\n\nThen eigenvectors.\n")

    assert caught.value.code == "subtitles.unrecognised_format"


def test_random_bytes_are_rejected_as_bad_encoding() -> None:
    data = random.Random(20240611).randbytes(4096)

    with pytest.raises(SubtitleError) as caught:
        parse_subtitles(data, "noise.srt")

    assert caught.value.code == "subtitles.bad_encoding"


def test_invalid_utf16_after_a_byte_order_mark_is_rejected_as_bad_encoding() -> None:
    with pytest.raises(SubtitleError) as caught:
        decode_subtitle_bytes(codecs.BOM_UTF16_LE + b"\x00\xd8A")

    assert caught.value.code == "subtitles.bad_encoding"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"WEBVTT\n", id="header-only"),
        pytest.param(b"WEBVTT\n\nNOTE nothing here\n", id="comment-only"),
        pytest.param(b"WEBVTT\n\n00:00:xx.000 --> 00:00:01.000\nhi\n", id="only-a-broken-cue"),
        pytest.param(b"1\n00:00:0x,000 --> 00:00:01,000\nhi\n", id="srt-only-a-broken-cue"),
    ],
)
def test_file_without_a_valid_cue_is_rejected_as_no_cues(data: bytes) -> None:
    with pytest.raises(SubtitleError) as caught:
        parse_subtitles(data)

    assert caught.value.code == "subtitles.no_cues"


@pytest.mark.parametrize(
    ("name", "language"),
    [
        ("lecture.ko.vtt", "ko"),
        ("intro.en-US.srt", "en-US"),
        ("talk.vtt", None),
        ("course/week1/lecture.zh-Hant-TW.vtt", "zh-Hant-TW"),
        ("intro.en_us.srt", "en-US"),
        ("lecture.fil.sbv", "fil"),
        ("lecture.es-419.vtt", "es-419"),
        ("lecture.final.vtt", None),
        ("lecture.v2.vtt", None),
        ("ko.vtt", None),
    ],
)
def test_language_is_taken_from_a_plausible_tag_before_the_extension(name: str, language: str | None) -> None:
    assert language_from_filename(name) == language
