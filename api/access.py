"""Who is calling and what they may see: the one visibility rule of the API.

A member sees and changes only their own videos and jobs; an admin sees everything. Something
the caller may not see answers exactly like something missing (404), so ids belonging to other
accounts cannot be probed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth.guard import claims_of
from pipeline.db.models import Video
from pipeline.errors import NotFound


@dataclass(frozen=True)
class Viewer:
    """Who is asking, as far as visibility rules care."""

    user_id: uuid.UUID
    is_admin: bool

    def may_see(self, owner_id: uuid.UUID | None) -> bool:
        """Whether a video owned by ``owner_id`` is this caller's (admins own everything)."""
        return self.is_admin or owner_id == self.user_id


def viewer_of(request: Request[Any, Any, Any]) -> Viewer:
    """The caller of a guarded request, with the role the guard read for this request."""
    caller = claims_of(request)
    return Viewer(user_id=caller.user_id, is_admin=caller.is_admin)


async def visible_video(db: AsyncSession, viewer: Viewer, video_id: uuid.UUID) -> Video:
    """The video, or ``video.not_found`` when it is missing or belongs to someone else."""
    video = await db.get(Video, video_id)
    if video is None or not viewer.may_see(video.owner_id):
        raise NotFound(f"There is no video {video_id}.", code="video.not_found")
    return video
