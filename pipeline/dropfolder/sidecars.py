"""Reading a drop's metadata sidecar (``lecture.json``) into what :func:`submit_file` takes.

The sidecar is a convenience, never a gate: every field that cannot be used becomes a note
on the video and the video goes through with the default in its place.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline.db.models import User
from pipeline.languages import normalise_language

MAX_METADATA_BYTES = 256 * 1024
"""A metadata sidecar larger than this is not read; real ones are a few hundred bytes."""


@dataclass
class DropMetadata:
    """The fields a metadata sidecar may set, and the problems met reading it."""

    title: str | None = None
    description: str = ""
    language: str | None = None
    owner: str | None = None
    """As written: a user id or a username, resolved by :func:`resolve_owner`."""
    poster_at: float | None = None
    notes: list[str] = field(default_factory=list)


def parse_metadata(name: str, data: bytes) -> DropMetadata:
    """Read the JSON object in ``data``; whatever is unusable becomes a note, never an error.

    Args:
        name: The sidecar's file name, used in the notes.
        data: The sidecar's bytes.
    """
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return DropMetadata(notes=[f"The metadata file {name} is not UTF-8 text, so it was ignored."])
    except json.JSONDecodeError as error:
        return DropMetadata(notes=[f"The metadata file {name} is not valid JSON ({error.msg} at line {error.lineno})."])
    if not isinstance(document, dict):
        return DropMetadata(notes=[f"The metadata file {name} does not hold a JSON object, so it was ignored."])
    return _fields(name, document)


def _fields(name: str, document: dict[str, Any]) -> DropMetadata:
    meta = DropMetadata()
    meta.title = _text(meta, name, document, "title")
    meta.description = _text(meta, name, document, "description") or ""
    meta.owner = _text(meta, name, document, "owner")
    language = _text(meta, name, document, "language")
    if language is not None:
        meta.language = normalise_language(language)
        if meta.language is None:
            meta.notes.append(f"The metadata file {name} gives the language {language!r}, which is not a language tag.")
    meta.poster_at = _poster_time(meta, name, document.get("poster_at"))
    return meta


def _text(meta: DropMetadata, name: str, document: dict[str, Any], field_name: str) -> str | None:
    value = document.get(field_name)
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    kind = type(value).__name__
    meta.notes.append(f"The metadata file {name} gives {field_name} as {kind}, not text; it was ignored.")
    return None


def _poster_time(meta: DropMetadata, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        meta.notes.append(f"The metadata file {name} gives poster_at as {value!r}; it must be seconds, 0 or more.")
        return None
    return float(value)


async def resolve_owner(session: AsyncSession, owner: str) -> uuid.UUID | None:
    """The id of the user ``owner`` names (by id or by username), or ``None`` when unknown."""
    try:
        user_id = uuid.UUID(owner)
    except ValueError:
        return await session.scalar(select(User.id).where(User.username == owner))
    return await session.scalar(select(User.id).where(User.id == user_id))
