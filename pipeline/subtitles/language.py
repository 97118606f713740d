"""Guess a subtitle track's language from its file name, as in ``lecture.ko.vtt``."""

from __future__ import annotations

import re

from pipeline.languages import normalise_language

# A primary language subtag of two or three letters, then optionally a script (four letters)
# and a region (two letters or three digits); langcodes then checks it against the registry.
# Three-letter words that are also language codes ("old" is Old English) still match, so
# callers treat the result as a hint that an explicit language overrides.
_TAG = re.compile(r"([a-z]{2,3})(?:[-_]([a-z]{4}))?(?:[-_]([a-z]{2}|[0-9]{3}))?", re.IGNORECASE)


def language_from_filename(name: str) -> str | None:
    """Return the language tag before the extension, in canonical case, or None.

    Args:
        name: A file name or path, e.g. ``"intro.en-US.srt"``.

    Returns:
        ``"en-US"`` for ``intro.en-US.srt``, ``"ko"`` for ``lecture.ko.vtt``, and None for
        ``talk.vtt`` or when the part before the extension is not a registered tag. ISO 639-2
        codes come back in their short form (``lecture.kor.srt`` gives ``"ko"``).
    """
    parts = re.split(r"[\\/]", name)[-1].split(".")
    if len(parts) < 3 or not parts[0]:
        return None
    match = _TAG.fullmatch(parts[-2])
    if match is None:
        return None
    return normalise_language(parts[-2])
