"""Time vidpipe's storyboard, poster and probe against the plain ffmpeg ways of doing the same.

Run from the repository root::

    .venv/bin/python benchmarks/bench_storyboard.py

The first run generates a 60 s 1280x720 30 fps H.264 clip with AAC sound (x264's default
keyframe spacing, as most encoders leave it) under ``benchmarks/.cache/``; later runs reuse
it. Each figure is the best of three runs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.media.ffmpeg import find_ffmpeg, media_arg
from pipeline.media.probe import ProbeResult, probe
from pipeline.media.storyboard import choose_interval
from pipeline.media.thumbnails import build_storyboard, default_poster_time, extract_poster

CACHE = Path(__file__).resolve().parent / ".cache"
CLIP = CACHE / "clip-60s-720p30-h264-aac.mp4"
DURATION = 60.0
RUNS = 3


def make_clip(ffmpeg: str) -> Path:
    """Generate the benchmark clip once."""
    if CLIP.is_file():
        return CLIP
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"Generating {CLIP.name} (once)...", flush=True)
    video = f"testsrc2=size=1280x720:rate=30:duration={DURATION}"
    sound = f"sine=frequency=440:sample_rate=48000:duration={DURATION}"
    encode = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    encode += ["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"]
    plain(ffmpeg, "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", sound, *encode, media_arg(CLIP))
    return CLIP


def best_of(runs: int, work: Callable[[], object]) -> float:
    """The fastest of ``runs`` timings of ``work``, in seconds."""
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def plain(ffmpeg: str, *args: str) -> None:
    """Run ffmpeg the plain way, as a script would."""
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def time_storyboards(clip: Path, facts: ProbeResult, ffmpeg: str, out: Path) -> None:
    """Ours against one fps+scale+tile filter chain over the whole clip, same interval."""
    interval = choose_interval(facts.duration)

    def ours() -> None:
        asyncio.run(
            build_storyboard(
                clip,
                out / "ours",
                duration=facts.duration,
                display_width=facts.display_width,
                display_height=facts.display_height,
                ffmpeg=ffmpeg,
            )
        )

    def naive() -> None:
        (out / "naive").mkdir(exist_ok=True)
        chain = f"fps=1/{interval:g},scale=160:-2,tile=10x10"
        plain(ffmpeg, "-i", media_arg(clip), "-vf", chain, media_arg(out / "naive" / "sprite-%d.jpg"))

    ours_time, naive_time = best_of(RUNS, ours), best_of(RUNS, naive)
    print(f"storyboard every {interval:g} s, build_storyboard:  {ours_time:7.3f} s")
    print(f"storyboard every {interval:g} s, fps+scale+tile:    {naive_time:7.3f} s")
    print(f"  fps+scale+tile / ours:                {naive_time / ours_time:7.1f}x")


def time_posters(clip: Path, facts: ProbeResult, ffmpeg: str, out: Path, at: float) -> None:
    """Our input-seek poster against seeking on the output (decoding from the start)."""

    def input_seek() -> None:
        asyncio.run(extract_poster(clip, out / "in.jpg", at=at, duration=facts.duration, ffmpeg=ffmpeg))

    def output_seek() -> None:
        plain(
            ffmpeg,
            "-i",
            media_arg(clip),
            "-ss",
            f"{at}",
            "-frames:v",
            "1",
            "-update",
            "1",
            media_arg(out / "o.jpg"),
        )

    seek_in, seek_out = best_of(RUNS, input_seek), best_of(RUNS, output_seek)
    print(f"poster at {at:4.1f} s, input seek (ours):     {seek_in:7.3f} s")
    print(f"poster at {at:4.1f} s, output seek:           {seek_out:7.3f} s")
    print(f"  output seek / input seek:             {seek_out / seek_in:7.1f}x")


def main() -> None:
    ffmpeg = find_ffmpeg()
    clip = make_clip(ffmpeg)
    facts = probe(clip)
    print(f"clip: {clip.name}, {facts.duration:.2f} s, {facts.display_width}x{facts.display_height}")
    print(f"ffmpeg: {ffmpeg}")
    print(f"probe (PyAV, in process):               {best_of(RUNS, lambda: probe(clip)) * 1000:7.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        time_storyboards(clip, facts, ffmpeg, out)
        for at in (default_poster_time(facts.duration), 45.0):
            time_posters(clip, facts, ffmpeg, out, at)


if __name__ == "__main__":
    main()
