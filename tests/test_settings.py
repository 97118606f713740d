"""Settings: embedded defaults, and one clear sentence for each kind of mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigurationError
from pipeline.settings import Settings


def test_the_embedded_default_needs_nothing_but_a_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path)})

    assert settings.is_embedded
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'vidpipe.db'}"
    assert settings.storage_url == (tmp_path / "objects").as_uri()
    assert settings.search_url == "database"


def test_trusted_proxies_are_addresses_networks_or_any(tmp_path: Path) -> None:
    def trusted(value: str | None) -> tuple[str, ...]:
        env = {"VIDPIPE_DATA_DIR": str(tmp_path)} | ({"VIDPIPE_TRUSTED_PROXIES": value} if value is not None else {})
        return Settings.from_env(env).trusted_proxies

    assert trusted(None) == ("127.0.0.1",)
    assert trusted(" 10.0.0.5, 172.16.0.0/12 ,::1") == ("10.0.0.5", "172.16.0.0/12", "::1")
    assert trusted("*") == ("*",)


def test_a_missing_secret_is_generated_once_into_the_data_dir(tmp_path: Path) -> None:
    first = Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path)}).with_secret()
    second = Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path)}).with_secret()

    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"VIDPIPE_DATABASE_URL": "mysql://x/y"}, "VIDPIPE_DATABASE_URL"),
        ({"VIDPIPE_BROKER_URL": "amqp://guest@localhost"}, "VIDPIPE_BROKER_URL"),
        ({"VIDPIPE_STORAGE_URL": "ftp://host/x"}, "VIDPIPE_STORAGE_URL"),
        ({"VIDPIPE_STORAGE_URL": "s3:///no-bucket"}, "bucket"),
        ({"VIDPIPE_ENV": "production"}, "VIDPIPE_SECRET_KEY is required"),
        ({"VIDPIPE_SECRET_KEY": "short"}, "shorter than 32"),
        ({"VIDPIPE_MAX_ATTEMPTS": "many"}, "whole number"),
        ({"VIDPIPE_S3_PATH_STYLE": "maybe"}, "true or false"),
        ({"VIDPIPE_FFMPEG_THREADS": "-1"}, "VIDPIPE_FFMPEG_THREADS"),
        ({"VIDPIPE_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"}, "'proxy.internal'"),
        ({"VIDPIPE_TRUSTED_PROXIES": "10.0.0.0/33"}, "VIDPIPE_TRUSTED_PROXIES"),
    ],
)
def test_a_bad_setting_is_reported_in_one_sentence_naming_it(tmp_path: Path, env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path), **env})

    assert words in caught.value.message


def test_the_command_reports_an_unreachable_broker_without_a_traceback(tmp_path: Path) -> None:
    video = tmp_path / "x.mp4"
    video.write_bytes(b"0")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "process", str(video)],
        env={"VIDPIPE_DATA_DIR": str(tmp_path), "VIDPIPE_BROKER_URL": "redis://127.0.0.1:1/0", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "broker" in result.stderr and "Traceback" not in result.stderr


def test_the_command_reports_an_unknown_scheme_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "search", "x"],
        env={"VIDPIPE_DATA_DIR": str(tmp_path), "VIDPIPE_SEARCH_URL": "solr://x"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "VIDPIPE_SEARCH_URL" in result.stderr and "Traceback" not in result.stderr
