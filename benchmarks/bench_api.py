"""Throughput and tail latency of ``GET /api/v1/jobs/{id}`` against a bare Litestar route.

Run from the repository root (needs PostgreSQL and Redis on 127.0.0.1, and ``wrk``: on Debian
``apt-get install wrk``)::

    .venv/bin/python benchmarks/bench_api.py [--connections 50] [--seconds 10]

One ``vidpipe api`` process serves a scratch PostgreSQL database with a Redis broker (no
worker runs, so the job stays queued and every answer is the same). A member registers, logs
in and submits a clip; then ``wrk`` sends ``GET /api/v1/jobs/{id}`` with the member's bearer
token over ``--connections`` keep-alive connections. The baseline is a bare Litestar app with
one route answering a fixed body of the same size, served by the same uvicorn settings in its
own process and measured in the same run. wrk shares the machine's cores with the server, as
a load balancer on the same host would; both figures pay that equally.

Printed: requests per second and p50/p99 latency for each, and the ratios (goal: at least
3,000 requests per second and p99 under 15 ms for the job route).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CACHE = ROOT / "benchmarks" / ".cache"

BARE_APP = """
import sys
import uvicorn
from litestar import Litestar, get

BODY = {body}

@get("/bare", sync_to_thread=False)
def bare() -> dict:
    return BODY

uvicorn.run(Litestar([bare]), host="127.0.0.1", port=int(sys.argv[1]), log_level="info")  # as vidpipe api
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server at {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server at {url} did not answer within 60 s")


def call(url: str, body: dict[str, object] | None = None, token: str | None = None) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


def wrk(url: str, connections: int, seconds: int, token: str | None = None) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 in milliseconds, as wrk reports them."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in output:
        raise SystemExit(f"wrk saw error answers from {url}:\n{output}")
    return rate, _percentile(output, "50%"), _percentile(output, "99%")


def _percentile(output: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--profile", help="record the API process with py-spy into this file (collapsed stacks)")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed; on Debian: apt-get install wrk")

    from tests.mediagen import make_video

    CACHE.mkdir(parents=True, exist_ok=True)
    clip = CACHE / "api-clip.mp4"
    if not clip.exists():
        make_video(clip, duration=2.0, width=320, height=180)

    name = f"vidpipe_bench_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "VIDPIPE_DATA_DIR": tmp,
            "VIDPIPE_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            "VIDPIPE_BROKER_URL": "redis://127.0.0.1:6379/7",
            "VIDPIPE_BROKER_NAMESPACE": name,
            "VIDPIPE_STORAGE_URL": (Path(tmp) / "objects").as_uri(),
        }
        vidpipe = [sys.executable, "-m", "pipeline.cli.main"]
        subprocess.run([*vidpipe, "migrate"], env=env, check=True, capture_output=True)
        api_port, bare_port = free_port(), free_port()
        api = start([*vidpipe, "api", "--port", str(api_port)], env, Path(tmp) / "api.log")
        bare = None
        try:
            base = f"http://127.0.0.1:{api_port}"
            wait_ready(f"{base}/health/live", api)
            account = {"email": "bench@example.org", "username": "bench", "password": "Lecture-hall-42"}
            call(f"{base}/api/v1/auth/register", account)
            token = str(
                call(f"{base}/api/v1/auth/login", {"login": "bench", "password": account["password"]})["access_token"]
            )
            owner = call(f"{base}/api/v1/users/me", token=token)["id"]
            submitted = subprocess.run(
                [*vidpipe, "process", str(clip), "--no-wait", "--json"], env=env, check=True, capture_output=True
            )
            job_id = json.loads(submitted.stdout)["job"]["id"]
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}", autocommit=True) as conn:
                conn.execute("UPDATE videos SET owner_id = %s", (owner,))
            job_url = f"{base}/api/v1/jobs/{job_id}"
            body = call(job_url, token=token)

            bare = start([sys.executable, "-c", BARE_APP.format(body=repr(body)), str(bare_port)], env, Path(tmp) / "b")
            wait_ready(f"http://127.0.0.1:{bare_port}/bare", bare)

            # A short warm-up for each, then the measured runs.
            wrk(job_url, options.connections, 2, token)
            wrk(f"http://127.0.0.1:{bare_port}/bare", options.connections, 2)
            spy = None
            if options.profile:
                record = [
                    shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "-p",
                    str(api.pid),
                    "--subprocesses",
                    "-r",
                    "250",
                    "-f",
                    "raw",
                ]
                spy = subprocess.Popen(
                    [*record, "-d", str(options.seconds), "-o", options.profile],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            job_rate, job_p50, job_p99 = wrk(job_url, options.connections, options.seconds, token)
            if spy is not None:
                spy.wait()
            bare_rate, bare_p50, bare_p99 = wrk(
                f"http://127.0.0.1:{bare_port}/bare", options.connections, options.seconds
            )
        finally:
            stop(api)
            if bare is not None:
                stop(bare)
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"{options.connections} connections, {options.seconds} s each, one API process, wrk on the same host")
    print(
        f"  GET /api/v1/jobs/{{id}} with a token: {job_rate:8.0f} req/s  p50 {job_p50:6.2f} ms  p99 {job_p99:6.2f} ms"
    )
    print(
        f"  bare Litestar route, same body:    {bare_rate:8.0f} req/s  p50 {bare_p50:6.2f} ms  p99 {bare_p99:6.2f} ms"
    )
    print(f"  job route / bare route: {job_rate / bare_rate:5.2f}x the throughput, {job_p99 / bare_p99:5.2f}x the p99")
    print("  goal: >= 3000 req/s and p99 < 15 ms for the job route")


if __name__ == "__main__":
    main()
