"""Time a whole job against the bare media work it needs.

Run from the repository root::

    .venv/bin/python benchmarks/bench_pipeline.py

The clip is the 60 s 1280x720 30 fps H.264/AAC clip of ``bench_storyboard.py`` (generated
once under ``benchmarks/.cache/``), with a 600-cue English WebVTT file. Three figures, each
the best of three runs:

- the pipeline: ``vidpipe process`` on the embedded default (SQLite, local folder,
  in-process broker), from submit to the job's end;
- the bare media work: the same probe, poster, candidates and storyboard calls run one
  after another with no database, storage or broker around them;
- a plain ffmpeg script: ffprobe-free, output-seek poster and a ``fps+scale+tile``
  storyboard, the way a first version usually does it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_storyboard import best_of, make_clip, plain

from pipeline.media.ffmpeg import find_ffmpeg, media_arg
from pipeline.media.probe import probe
from pipeline.media.storyboard import choose_interval
from pipeline.media.thumbnails import (
    build_storyboard,
    default_poster_time,
    extract_candidates,
    extract_poster,
)
from pipeline.subtitles.writer import format_timestamp

CUES = 600


def write_subtitles(path: Path) -> Path:
    lines = ["WEBVTT", ""]
    for i in range(CUES):
        start, end = i * 0.1, i * 0.1 + 0.1
        lines += [
            f"{format_timestamp(start)} --> {format_timestamp(end)}",
            f"Cue {i}: eigenvalues and eigenvectors, part {i % 7}.",
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def pipeline_once(clip: Path, subtitles: Path) -> float:
    from pipeline.cli.app import open_pipeline, open_runtime
    from pipeline.cli.progress import wait_for_job
    from pipeline.settings import Settings
    from pipeline.submit import SubtitleFile, submit_file

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({"VIDPIPE_DATA_DIR": tmp}).with_secret()
        with open_pipeline(settings) as pipeline:

            async def go() -> float:
                async with open_runtime(pipeline) as runtime:
                    started = time.perf_counter()
                    submitted = await submit_file(runtime, clip, subtitles=[SubtitleFile(subtitles, "en")])
                    job = await wait_for_job(runtime, submitted.job_id, show=False, timeout=600)
                    elapsed = time.perf_counter() - started
                    assert job.status == "succeeded", job.status
                    return elapsed

            return asyncio.run(go())


def bare_media(clip: Path, ffmpeg: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        facts = probe(clip)

        async def go() -> None:
            await extract_poster(clip, out / "poster.jpg", at=None, duration=facts.duration, ffmpeg=ffmpeg)
            await extract_candidates(clip, out / "candidates", duration=facts.duration, ffmpeg=ffmpeg)
            await build_storyboard(
                clip,
                out / "board",
                duration=facts.duration,
                display_width=facts.display_width,
                display_height=facts.display_height,
                ffmpeg=ffmpeg,
            )

        asyncio.run(go())


def plain_script(clip: Path, ffmpeg: str, duration: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        at = default_poster_time(duration)
        plain(ffmpeg, "-i", media_arg(clip), "-ss", f"{at:.3f}", "-frames:v", "1", media_arg(out / "poster.jpg"))
        interval = choose_interval(duration)
        plain(
            ffmpeg,
            "-i",
            media_arg(clip),
            "-vf",
            f"fps=1/{interval},scale=160:-2,tile=10x10",
            media_arg(out / "board-%02d.jpg"),
        )


def main() -> None:
    ffmpeg = find_ffmpeg(os.environ.get("VIDPIPE_FFMPEG"))
    clip = make_clip(ffmpeg)
    with tempfile.TemporaryDirectory() as tmp:
        subtitles = write_subtitles(Path(tmp) / "clip.en.vtt")
        duration = probe(clip).duration
        pipeline_s = min(pipeline_once(clip, subtitles) for _ in range(3))
        bare_s = best_of(3, lambda: bare_media(clip, ffmpeg))
        script_s = best_of(3, lambda: plain_script(clip, ffmpeg, duration))
    print(f"clip: {clip.name} ({duration:.1f} s), subtitles: {CUES} cues")
    print(f"pipeline, embedded default, submit to succeeded: {pipeline_s:7.3f} s")
    print(f"bare media work (same calls, no db/storage/broker): {bare_s:7.3f} s")
    print(f"plain ffmpeg script (output-seek poster + fps+tile): {script_s:7.3f} s")
    print(f"pipeline / bare media work:   {pipeline_s / bare_s:5.2f}x")
    print(f"pipeline / plain ffmpeg script: {pipeline_s / script_s:5.2f}x")


if __name__ == "__main__":
    main()
