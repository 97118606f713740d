"""Language tags: one canonical BCP 47 form for file names, container tags and user input.

Containers tag tracks with ISO 639-2 codes (``kor``, ``eng``), file names and people use
BCP 47 (``ko``, ``en-US``); langcodes maps both to the shortest standard tag, so a search
filter for ``ko`` finds a track a Matroska file called ``kor``.
"""

from __future__ import annotations

import langcodes

_UNKNOWN = frozenset({"", "und", "zxx", "mis", "mul"})


def normalise_language(tag: str | None) -> str | None:
    """The standard form of ``tag``, or ``None`` when it is empty, undetermined or not a tag."""
    if tag is None or tag.strip().lower() in _UNKNOWN:
        return None
    text = tag.strip().replace("_", "-")
    if not langcodes.tag_is_valid(text):
        return None
    return str(langcodes.standardize_tag(text))
