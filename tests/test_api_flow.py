"""The whole journey of an API client, over plain HTTP against a running ``vidpipe api`` process.

Sign up, confirm the address with the link from the emailed ``.eml``, log in, announce a
clip with an embedded subtitle track, upload it where the answer points, complete, follow the
job with ETags, then find the clip by a word of its subtitle and by the start of its title.
Then the same from a second account's side: nothing of the first account's shows through.

One server per backend, shared by the module: the embedded default (SQLite, a local folder
behind the API's signed URLs, workers and scheduler inside the API process) and the real
services (PostgreSQL, the S3 server with presigned URLs, Redis with a separate worker process,
and the OpenSearch-compatible server that ``open_stack`` gives every services stack).
"""

from __future__ import annotations

import email
import email.policy
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests import services
from tests.mediagen import make_video_with_subtitles
from tests.test_api_uploads import ApiServer
from tests.test_api_videos import BACKENDS, PASSWORD, error_code, open_stack

WORD = "albatross"
"""Said only in the clip's subtitle, so a search for it can only find the clip through its cues."""
SRT = "1\n00:00:00,500 --> 00:00:01,500\nThe albatross follows the ship.\n"
TITLE = "Seabirds of the southern ocean"
JOB_TIMEOUT = 120.0


@dataclass
class Site:
    """A running API, a plain HTTP client for it, the folder its emails land in, and a clip to send."""

    server: ApiServer
    http: httpx.Client
    outbox: Path
    clip: Path


@dataclass
class Member:
    """A signed-in account, as the client keeps it."""

    username: str
    headers: dict[str, str]


@pytest.fixture(scope="module", params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp(f"flow_{request.param}")
    clip = make_video_with_subtitles(tmp / "seabirds.mp4", [("eng", SRT)])
    with open_stack(request, request.param, tmp, {}) as stack:
        server = ApiServer(stack.env, tmp / "api.log")
        try:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                yield Site(server, http, Path(stack.env["VIDPIPE_DATA_DIR"]) / "outbox", clip)
        finally:
            server.stop()


# What a client does, step by step.


def verification_token(outbox: Path, address: str, timeout: float = 30) -> str:
    """The ``token`` of the link in the verification email sent to ``address``, once it is written."""
    found: list[EmailMessage] = []

    def arrived() -> bool:
        found[:] = [message for message in _emails(outbox) if message["To"].addresses[0].addr_spec == address]
        return bool(found)

    assert services.wait_until(arrived, timeout), f"no email to {address} in {outbox}"
    [message] = found
    body = message.get_body(("plain",))
    assert body is not None
    [link] = re.findall(r"https?://\S+", body.get_content())
    return parse_qs(urlsplit(link).query)["token"][0]


def _emails(outbox: Path) -> list[EmailMessage]:
    messages = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


def sign_up(site: Site, username: str) -> Member:
    """Register, confirm the address with the emailed token, and log in."""
    address = f"{username}@example.org"
    registered = site.http.post(
        "/api/v1/auth/register", json={"email": address, "username": username, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["is_verified"] is False

    token = verification_token(site.outbox, address)
    verified = site.http.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["is_verified"] is True

    tokens = site.http.post("/api/v1/auth/login", json={"login": username, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return Member(username, {"Authorization": f"Bearer {tokens.json()['access_token']}"})


def publish(site: Site, member: Member, title: str) -> tuple[str, str]:
    """Announce the clip, send its bytes as the answer says, complete; the video and job ids."""
    data = site.clip.read_bytes()
    announcement = {
        "title": title,
        "description": "A short clip with one English subtitle cue.",
        "language": "en",
        "filename": site.clip.name,
        "content_type": "video/mp4",
        "size": len(data),
    }
    announced = site.http.post("/api/v1/videos", json=announcement, headers=member.headers)
    assert announced.status_code == 201, announced.text
    video, upload = announced.json()["video"], announced.json()["upload"]
    assert video["status"] == "awaiting_upload" and upload["method"] == "put"

    # A fresh client with only the given headers, as a browser sends the bytes: the URL is the
    # API's own signed endpoint on the embedded default and a presigned S3 URL on the services.
    with httpx.Client(timeout=60) as plain:
        sent = plain.request(upload["method"].upper(), upload["url"], content=data, headers=upload["headers"])
    assert sent.status_code == 200, sent.text

    completed = site.http.post(f"/api/v1/videos/{video['id']}/uploads/complete", headers=member.headers)
    assert completed.status_code == 202, completed.text
    return video["id"], completed.json()["job"]["id"]


@dataclass
class Followed:
    """How a job looked when it ended, and how its conditional reads went on the way."""

    body: dict[str, Any]
    etag: str
    not_modified: int


def follow_job(site: Site, member: Member, job_id: str) -> Followed:
    """Long-poll the job with ``If-None-Match`` until it ends, as a client following progress does."""
    first = site.http.get(f"/api/v1/jobs/{job_id}", headers=member.headers)
    assert first.status_code == 200, first.text
    body, etag, not_modified = first.json(), first.headers["etag"], 0
    deadline = time.monotonic() + JOB_TIMEOUT
    while body["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"job {job_id} did not end in time: {body}"
        answer = site.http.get(
            f"/api/v1/jobs/{job_id}", params={"wait": 2}, headers={**member.headers, "If-None-Match": etag}
        )
        if answer.status_code == 304:
            assert answer.headers["etag"] == etag and answer.content == b""
            not_modified += 1
            continue
        assert answer.status_code == 200, answer.text
        body, etag = answer.json(), answer.headers["etag"]
    return Followed(body, etag, not_modified)


def search(site: Site, member: Member, query: str) -> dict[str, Any]:
    answer = site.http.get("/api/v1/search", params={"q": query}, headers=member.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def suggest(site: Site, member: Member, prefix: str) -> list[dict[str, Any]]:
    answer = site.http.get("/api/v1/search/suggest", params={"q": prefix}, headers=member.headers)
    assert answer.status_code == 200, answer.text
    suggestions: list[dict[str, Any]] = answer.json()["suggestions"]
    return suggestions


# The tests.


def test_a_new_member_signs_up_uploads_a_subtitled_clip_and_finds_it(site: Site) -> None:
    ada = sign_up(site, "ada")

    video_id, job_id = publish(site, ada, TITLE)
    followed = follow_job(site, ada, job_id)

    assert followed.body["status"] == "succeeded", followed.body
    assert followed.body["video_id"] == video_id
    assert {stage["status"] for stage in followed.body["stages"]} == {"succeeded"}
    unchanged = site.http.get(f"/api/v1/jobs/{job_id}", headers={**ada.headers, "If-None-Match": followed.etag})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == followed.etag

    found = search(site, ada, WORD)
    assert [hit["video"] for hit in found["hits"]] == [{"id": video_id, "title": TITLE}]
    [cue] = found["hits"][0]["cues"]
    assert cue["start"] == pytest.approx(0.5) and cue["end"] == pytest.approx(1.5)
    assert f"<mark>{WORD}</mark>" in cue["highlight"].lower()

    assert {"text": TITLE, "video_id": video_id} in suggest(site, ada, TITLE[:4])


def test_a_second_member_sees_nothing_of_the_first_members_video(site: Site) -> None:
    owner, other = sign_up(site, "ines"), sign_up(site, "omar")
    video_id, job_id = publish(site, owner, "Tides and currents")
    assert follow_job(site, owner, job_id).body["status"] == "succeeded"

    assert error_code(site.http.get(f"/api/v1/videos/{video_id}", headers=other.headers), 404) == "video.not_found"
    assert error_code(site.http.get(f"/api/v1/jobs/{job_id}", headers=other.headers), 404) == "job.not_found"
    # Someone else's ids answer exactly as ids that were never issued, so they cannot be probed.
    never = uuid.uuid4()
    assert error_code(site.http.get(f"/api/v1/videos/{never}", headers=other.headers), 404) == "video.not_found"
    assert error_code(site.http.get(f"/api/v1/jobs/{never}", headers=other.headers), 404) == "job.not_found"

    # The rule (api/search.py, api/access.py): a member's search and suggestions cover their own
    # videos and the ownerless ones from the CLI or drop folder; only an admin's cover every
    # account's. So the owner finds the clip and the other member does not.
    assert video_id in [hit["video"]["id"] for hit in search(site, owner, WORD)["hits"]]
    assert video_id not in [hit["video"]["id"] for hit in search(site, other, WORD)["hits"]]
    assert video_id in [s["video_id"] for s in suggest(site, owner, "Tides")]
    assert video_id not in [s["video_id"] for s in suggest(site, other, "Tides")]
