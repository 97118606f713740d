"""Turn the bytes of an uploaded subtitle file into text.

Subtitle files arrive in whatever encoding the authoring tool used. A byte-order mark settles
it; otherwise BOM-less UTF-16 and strict UTF-8 are tried, then Korean CP949 (many Korean tools
still write it, and general detectors often mistake short Korean texts for Big5 or a Western
codepage), then charset-normalizer for everything else. Text that decodes into mostly control
characters is taken for binary data and rejected.
"""

from __future__ import annotations

import codecs
import logging
import unicodedata

from charset_normalizer import from_bytes

from pipeline.errors import SubtitleError

logger = logging.getLogger(__name__)

# UTF-32 marks come first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# EUC-KR is a subset of CP949, so one name covers both and also decodes the extra syllables.
_KOREAN_CODECS = frozenset({"cp949", "euc_kr"})

# Share of the non-ASCII characters that must be Hangul before CP949 is believed.
_MIN_HANGUL_SHARE = 0.7
# Share of those Hangul characters that must be everyday syllables (see _is_mostly_hangul).
_MIN_COMMON_SYLLABLE_SHARE = 0.5

# Share of control characters above which decoded text is taken for binary data.
_MAX_CONTROL_SHARE = 0.01
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x00")


def decode_subtitle_bytes(data: bytes) -> tuple[str, str]:
    """Decode a subtitle file, detecting its encoding.

    Args:
        data: The raw bytes of the file.

    Returns:
        The text without any byte-order mark, and the name of the encoding used.

    Raises:
        SubtitleError: ``subtitles.bad_encoding`` when no encoding gives sensible text.
    """
    decoded = _decode_with_bom(data) or _decode_utf16_without_bom(data) or _decode_utf8(data) or _decode_legacy(data)
    if decoded is None or _looks_binary(decoded[0]):
        raise SubtitleError(
            "The file's characters cannot be read: it is not UTF-8 or another text encoding we recognise. "
            "Save it as UTF-8 text and upload it again.",
            code="subtitles.bad_encoding",
        )
    return decoded


def _decode_with_bom(data: bytes) -> tuple[str, str] | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise SubtitleError(
                    f"The file starts with a {encoding.upper()} byte-order mark but its characters are "
                    f"not valid {encoding.upper()}.",
                    code="subtitles.bad_encoding",
                ) from exc
    return None


def _decode_utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    # Mostly-ASCII UTF-16 is half NUL bytes, all on one side of each pair; UTF-8 would accept
    # it as text full of NULs, so it is caught before.
    if len(data) < 4 or len(data) % 2 or data.count(0) < len(data) // 4:
        return None
    encoding = "utf-16-le" if data[1::2].count(0) > data[0::2].count(0) else "utf-16-be"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        return None


def _decode_utf8(data: bytes) -> tuple[str, str] | None:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return None


def _decode_legacy(data: bytes) -> tuple[str, str] | None:
    # Detectors often take short Korean texts for Big5 or a Western codepage, which decode
    # without error into nonsense, so CP949 that reads as ordinary Hangul goes first.
    return _decode_korean(data) or _detect(data)


def _detect(data: bytes) -> tuple[str, str] | None:
    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        logger.debug("No encoding detected for %d bytes of subtitle data.", len(data))
        return None
    encoding = codecs.lookup(best.encoding).name
    if encoding in _KOREAN_CODECS:
        encoding = "cp949"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        return None


def _decode_korean(data: bytes) -> tuple[str, str] | None:
    try:
        text = data.decode("cp949")
    except UnicodeDecodeError:
        return None
    return (text, "cp949") if _is_mostly_hangul(text) else None


def _is_mostly_hangul(text: str) -> bool:
    """Whether the non-ASCII text is mostly Hangul, and mostly the everyday syllables.

    Other East Asian encodings also decode as CP949, but land in its extension block of rare
    syllables; everyday Korean text stays almost entirely within the 2,350 syllables that
    EUC-KR already had.
    """
    non_ascii = [char for char in text if ord(char) > 0x7F]
    hangul = [char for char in non_ascii if unicodedata.name(char, "").startswith("HANGUL")]
    if not hangul or len(hangul) < _MIN_HANGUL_SHARE * len(non_ascii):
        return False
    common = sum(1 for char in hangul if _in_euc_kr(char))
    return common >= _MIN_COMMON_SYLLABLE_SHARE * len(hangul)


def _in_euc_kr(char: str) -> bool:
    # Python's EUC-KR writes other syllables as 8-byte jamo sequences; only 2 bytes count.
    try:
        return len(char.encode("euc_kr")) == 2
    except UnicodeEncodeError:
        return False


def _looks_binary(text: str) -> bool:
    if not text:
        return False
    controls = sum(1 for char in text if unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROLS)
    return controls / len(text) > _MAX_CONTROL_SHARE
