"""Finding and running the ffmpeg command line.

Frame and filter work (posters, candidates, storyboards, embedded subtitle extraction) runs
the ffmpeg binary as a child process. The binary is the ``VIDPIPE_FFMPEG`` setting when
given, else ``ffmpeg`` on PATH, else the static build that ``imageio-ffmpeg`` ships, so a
machine with nothing but Python can still do the work.

A child ffmpeg never outlives the coroutine that started it: cancellation and timeouts kill
it and wait for it before the exception travels on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
from collections import deque
from pathlib import Path

from pipeline.errors import ConfigurationError, MediaError

logger = logging.getLogger(__name__)

_GLOBAL_ARGS = ("-hide_banner", "-nostdin", "-loglevel", "error", "-y")
_STDERR_LINES_KEPT = 20
"""ffmpeg at ``-loglevel error`` says little, but a broken file can repeat one complaint per
frame; only the tail is kept so a long run cannot fill memory."""
_STDERR_LINE_LIMIT = 2000
_STDERR_CHUNK = 4096

_thread_count = 0
"""``VIDPIPE_FFMPEG_THREADS``, applied to every run in this process; 0 leaves ffmpeg's own choice."""


def set_thread_count(threads: int) -> None:
    """Limit the decoding and filter threads of every later ffmpeg run in this process (0: no limit).

    One value per process, set when the runtime is built: the machine's cores are what it
    divides, so it belongs to the process rather than to a single call.
    """
    global _thread_count
    _thread_count = max(0, threads)


def find_ffmpeg(explicit: str | None = None) -> str:
    """Choose the ffmpeg binary to run.

    Args:
        explicit: the ``VIDPIPE_FFMPEG`` setting, a path or a command name; when given it
            must work, there is no quiet fallback from a setting someone chose.

    Returns:
        An absolute path (or the command name as found on PATH) of an executable ffmpeg.

    Raises:
        ConfigurationError: the explicit binary is missing, or no ffmpeg can be found at all.
    """
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise ConfigurationError(
                f"VIDPIPE_FFMPEG is set to {explicit!r}, but no executable ffmpeg is there.",
                code="config.ffmpeg_missing",
            )
        return found

    on_path = shutil.which("ffmpeg")
    if on_path is not None:
        return on_path
    return _bundled_ffmpeg()


def _bundled_ffmpeg() -> str:
    """The binary shipped in the imageio-ffmpeg wheel, the last resort."""
    try:
        import imageio_ffmpeg

        bundled = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise ConfigurationError(
            "No ffmpeg found: set VIDPIPE_FFMPEG, put ffmpeg on PATH or install imageio-ffmpeg.",
            code="config.ffmpeg_missing",
        ) from exc
    if not os.access(bundled, os.X_OK):
        raise ConfigurationError(
            f"The ffmpeg shipped with imageio-ffmpeg ({bundled}) is not executable.",
            code="config.ffmpeg_missing",
        )
    return str(bundled)


def media_arg(path: Path) -> str:
    """Spell a file path for the ffmpeg command line.

    The ``file:`` protocol prefix on an absolute path means that neither a name starting
    with ``-`` (read as an option) nor one containing ``:`` (read as a protocol) can change
    what ffmpeg does.
    """
    return f"file:{Path(path).resolve()}"


async def run_ffmpeg(args: list[str], *, ffmpeg: str, timeout: float | None = None, what: str) -> None:
    """Run ffmpeg to completion with the given arguments.

    ``-hide_banner -nostdin -loglevel error -y`` come first, so ``args`` holds only inputs,
    filters and outputs.

    Args:
        args: the command line after the global options.
        ffmpeg: the binary, from :func:`find_ffmpeg`.
        timeout: seconds before the run is abandoned; ``None`` waits as long as it takes.
        what: a few words naming the work for messages ("the poster of lecture.mp4").

    Raises:
        MediaError: ``media.timeout`` when the run took too long, ``media.ffmpeg_failed``
            when ffmpeg exited with an error (the message names ``what`` and ffmpeg's last
            complaint).
        ConfigurationError: the binary cannot be started.
        asyncio.CancelledError: re-raised after the child has been killed and reaped.
    """
    started = time.perf_counter()
    process = await _start(ffmpeg, args)
    logger.debug("Started ffmpeg (pid %s) for %s.", process.pid, what)
    tail: deque[str] = deque(maxlen=_STDERR_LINES_KEPT)
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(_collect_stderr(process, tail), process.wait())
    except TimeoutError:
        await _kill(process, what, f"it ran longer than {timeout} s")
        raise MediaError(
            f"Processing {what} took longer than {timeout:g} seconds and was stopped.",
            code="media.timeout",
        ) from None
    except BaseException:
        # Cancellation (or anything unexpected) must not leave a running ffmpeg behind.
        await _kill(process, what, "its task was cancelled")
        raise

    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        _raise_failed(what, process.returncode, tail)
    logger.debug("ffmpeg finished %s in %.2f s.", what, elapsed)


async def _start(ffmpeg: str, args: list[str]) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            ffmpeg,
            *_GLOBAL_ARGS,
            *_with_threads(args, _thread_count),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except (FileNotFoundError, PermissionError) as exc:
        raise ConfigurationError(
            f"The ffmpeg binary {ffmpeg} cannot be run: {exc}.", code="config.ffmpeg_missing"
        ) from exc


def _with_threads(args: list[str], threads: int) -> list[str]:
    """Add ``-threads`` before each input (its decoder) and cap the filter graph's threads."""
    if threads <= 0:
        return args
    count = str(threads)
    limited = ["-filter_threads", count, "-filter_complex_threads", count]
    for arg in args:
        if arg == "-i":
            limited += ["-threads", count]
        limited.append(arg)
    return limited


async def _collect_stderr(process: asyncio.subprocess.Process, tail: deque[str]) -> None:
    """Read ffmpeg's stderr to its end, keeping the last few non-empty lines.

    Read in chunks rather than lines: a line without end (a progress report ending in a
    carriage return, a binary dump) must neither stall the reader nor grow without bound.
    """
    assert process.stderr is not None
    pending = b""
    while chunk := await process.stderr.read(_STDERR_CHUNK):
        lines = re.split(rb"[\r\n]", pending + chunk)
        pending = lines.pop()[-_STDERR_LINE_LIMIT:]
        for line in lines:
            _keep(tail, line)
    _keep(tail, pending)


def _keep(tail: deque[str], line: bytes) -> None:
    text = line.decode("utf-8", errors="replace").strip()
    if text:
        tail.append(text[:_STDERR_LINE_LIMIT])


async def _kill(process: asyncio.subprocess.Process, what: str, reason: str) -> None:
    """Kill the child and wait for it, so no orphan or zombie remains."""
    if process.returncode is None:
        logger.info("Killing ffmpeg (pid %s) for %s because %s.", process.pid, what, reason)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    # Shielded so that a second cancellation arriving now cannot skip the reaping.
    await asyncio.shield(process.wait())


def _raise_failed(what: str, returncode: int | None, tail: deque[str]) -> None:
    """Turn a non-zero exit into a MediaError naming the work and ffmpeg's last complaint."""
    last = tail[-1] if tail else f"it exited with status {returncode} and said nothing"
    logger.info("ffmpeg failed on %s with status %s: %s", what, returncode, last)
    raise MediaError(f"Could not process {what}: {last}", code="media.ffmpeg_failed", details=list(tail))
