"""A 1 GiB upload streamed through a running ``vidpipe api``: throughput and the API's memory.

Run from the repository root::

    .venv/bin/python benchmarks/bench_upload.py [--size-mib 1024] [--runs 2] [--s3]

Every server runs in a process of its own on 127.0.0.1 and the body is generated on the fly
by an httpx client in this process (1 MiB blocks, with ``Content-Length``). Figures, in the
same run:

- disk: writing the same blocks to a file with one fsync, the ceiling of the local store;
- bare route: uvicorn serving a Litestar app with one ``PUT`` route that reads the request
  stream and drops it, the ceiling of the HTTP stack itself on this machine;
- vidpipe api: ``PUT /api/v1/videos/{id}/source`` on the embedded default (SQLite, a local
  folder), from announcement to the 202 answer; with ``--s3`` also against a moto S3 server
  (streamed as a multipart upload in 8 MiB parts).

Memory is the server's peak resident size during the upload (``VmHWM`` after resetting it
through ``/proc/<pid>/clear_refs``) minus its resident size just before; the goal is under
64 MiB whatever the body's size. The bytes are random, so each job is cancelled at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
PASSWORD = "Lecture-hall-42"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def blocks(size: int, block: bytes) -> Iterator[bytes]:
    for start in range(0, size, len(block)):
        yield block[: min(len(block), size - start)]


class Server:
    """A child process serving HTTP on a free port, with its memory readable from /proc."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            args, env={**os.environ, **env}, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health/live", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"the server did not start; see {log}")

    def resident(self) -> int:
        return self._status("VmRSS")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak(self) -> int:
        return self._status("VmHWM")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)


def measured_put(server: Server, url: str, size: int, block: bytes, headers: dict[str, str]) -> tuple[float, int]:
    """PUT ``size`` bytes; the seconds it took and how far the server's peak memory rose."""
    before = server.resident()
    server.reset_peak()
    started = time.perf_counter()
    answer = httpx.put(url, content=blocks(size, block), headers={**headers, "Content-Length": str(size)}, timeout=1800)
    elapsed = time.perf_counter() - started
    assert answer.status_code in (200, 202), answer.text
    return elapsed, server.peak() - before


def disk_baseline(folder: Path, size: int, block: bytes) -> float:
    path = folder / "disk-baseline.bin"
    started = time.perf_counter()
    with path.open("wb") as out:
        for piece in blocks(size, block):
            out.write(piece)
        out.flush()
        os.fsync(out.fileno())
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def bare_route(folder: Path, size: int, block: bytes, runs: int) -> tuple[float, int]:
    port = free_port()
    server = Server([sys.executable, __file__, "--serve-bare", str(port)], {}, port, folder / "bare.log")
    try:
        measured_put(server, f"{server.url}/upload", MIB, block, {})
        results = [measured_put(server, f"{server.url}/upload", size, block, {}) for _ in range(runs)]
    finally:
        server.stop()
    return min(seconds for seconds, _ in results), max(growth for _, growth in results)


def vidpipe_api(folder: Path, size: int, block: bytes, runs: int, env: dict[str, str]) -> tuple[float, int]:
    port = free_port()
    env = {
        "VIDPIPE_DATA_DIR": str(folder / "data"),
        "VIDPIPE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "VIDPIPE_QUOTA_MB": str(4 * (runs + 1) * max(1, size // MIB)),
        **env,
    }
    args = [sys.executable, "-m", "pipeline.cli.main", "api", "--host", "127.0.0.1", "--port", str(port)]
    server = Server(args, env, port, folder / "api.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            headers = _account(client)
            _upload(server, client, headers, MIB, block)
            results = [_upload(server, client, headers, size, block) for _ in range(runs)]
    finally:
        server.stop()
    return min(seconds for seconds, _ in results), max(growth for _, growth in results)


def _account(client: httpx.Client) -> dict[str, str]:
    name = f"bench{uuid.uuid4().hex[:8]}"
    client.post(
        "/api/v1/auth/register", json={"email": f"{name}@example.org", "username": name, "password": PASSWORD}
    ).raise_for_status()
    tokens = client.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
    tokens.raise_for_status()
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def _upload(
    server: Server, client: httpx.Client, headers: dict[str, str], size: int, block: bytes
) -> tuple[float, int]:
    body = {"title": "Benchmark", "filename": "bench.mp4", "content_type": "video/mp4", "size": size}
    announced = client.post("/api/v1/videos", json=body, headers=headers)
    announced.raise_for_status()
    video_id = announced.json()["video"]["id"]
    measured = measured_put(server, f"{server.url}/api/v1/videos/{video_id}/source", size, block, headers)
    job = client.get(f"/api/v1/videos/{video_id}", headers=headers).json()["job"]["id"]
    client.post(f"/api/v1/jobs/{job}/cancel", headers=headers)
    return measured


def serve_bare(port: int) -> None:
    """The baseline server: Litestar and uvicorn, one route that reads the request stream and drops it."""
    import uvicorn
    from litestar import Litestar, Request, get, put

    @get("/health/live", sync_to_thread=False)
    def live() -> str:
        return "ok"

    @put("/upload", request_max_body_size=None)
    async def upload(request: Request[Any, Any, Any]) -> None:
        async for _chunk in request.stream():
            pass

    uvicorn.run(Litestar([live, upload]), host="127.0.0.1", port=port, log_level="warning", loop="asyncio")


def s3_env(folder: Path) -> tuple[dict[str, str], Any]:
    sys.path.insert(0, str(ROOT))
    from tests.s3server import make_bucket, start_s3_server

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = start_s3_server()
    make_bucket(server.endpoint_url, "bench-uploads")
    env = {
        "VIDPIPE_STORAGE_URL": "s3://bench-uploads/media",
        "VIDPIPE_S3_ENDPOINT_URL": server.endpoint_url,
        "VIDPIPE_S3_PATH_STYLE": "true",
        "VIDPIPE_S3_REGION": "us-east-1",
        "VIDPIPE_DATA_DIR": str(folder / "data-s3"),
    }
    return env, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=2, help="uploads per server; the best time is kept")
    parser.add_argument("--s3", action="store_true", help="also measure vidpipe api against a moto S3 server")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return

    size, block = args.size_mib * MIB, os.urandom(MIB)
    with tempfile.TemporaryDirectory(prefix="bench-upload-", dir=ROOT / "benchmarks") as tmp:
        folder = Path(tmp)
        disk = min(disk_baseline(folder, size, block) for _ in range(args.runs))
        bare = bare_route(folder, size, block, args.runs)
        local = vidpipe_api(folder, size, block, args.runs, {})
        s3 = None
        if args.s3:
            env, moto = s3_env(folder)
            try:
                s3 = vidpipe_api(folder, size, block, args.runs, env)
            finally:
                moto.stop()

    def rate(seconds: float) -> float:
        return size / MIB / seconds

    print(f"{args.size_mib} MiB streamed upload, best of {args.runs} runs")
    print(f"disk write + fsync (baseline):          {rate(disk):7.1f} MiB/s")
    print(f"bare Litestar PUT route, bytes dropped: {rate(bare[0]):7.1f} MiB/s   peak memory +{bare[1] / MIB:5.1f} MiB")
    print(
        f"vidpipe api PUT /source, local folder:  {rate(local[0]):7.1f} MiB/s   peak memory +{local[1] / MIB:5.1f} MiB"
        f"   ({rate(local[0]) / rate(bare[0]):.2f}x the bare route)"
    )
    if s3 is not None:
        print(
            f"vidpipe api PUT /source, moto S3:       {rate(s3[0]):7.1f} MiB/s   peak memory +{s3[1] / MIB:5.1f} MiB"
            f"   ({rate(s3[0]) / rate(bare[0]):.2f}x the bare route)"
        )
    print("goal: peak memory growth under 64 MiB")


if __name__ == "__main__":
    main()
