# syntax=docker/dockerfile:1
#
# One image for every vidpipe process: the API, the workers, the scheduler and the release
# step (`vidpipe migrate`). The command picks the role; docker-compose.yml and the Procfile
# run the same commands. Settings come from VIDPIPE_* environment variables (README.md).
#
#   docker build -t vidpipe .
#   docker run --rm -p 8000:8000 vidpipe     # the embedded default: SQLite, local folder, in-process workers

# --- build: the project wheel and the wheels of everything it depends on -------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY api ./api
COPY workers ./workers
COPY migrations ./migrations

# Every dependency ships binary wheels, so no compiler is needed even here.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: the wheels, FFmpeg from the distribution, an unprivileged user -----------------
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="vidpipe" \
      org.opencontainers.image.description="An asynchronous media pipeline for lecture videos" \
      org.opencontainers.image.licenses="Apache-2.0"

# The distribution's FFmpeg follows Debian's security updates; tini reaps ffmpeg children and
# forwards signals, so a stop reaches uvicorn, Dramatiq and the scheduler as SIGTERM.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg tini \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 vidpipe \
    && useradd --system --uid 10001 --gid vidpipe --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin vidpipe \
    && mkdir /data \
    && chown vidpipe:vidpipe /data

# The wheels are mounted for this one step, so they never become a layer of the image. The
# venv gets no pip or setuptools of its own. imageio-ffmpeg's bundled binary (about 165 MB) is
# removed: vidpipe takes the ffmpeg on PATH first, which here is the distribution's.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/vidpipe \
    && pip --python /opt/vidpipe/bin/python install --no-cache-dir --no-index --find-links=/wheels /wheels/vidpipe-*.whl \
    && find /opt/vidpipe -path '*/imageio_ffmpeg/binaries/ffmpeg-*' -delete

ENV PATH="/opt/vidpipe/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIDPIPE_DATA_DIR=/data \
    PORT=8000

WORKDIR /data
# Numeric, so an orchestrator can verify the user is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000

# Liveness: the API process is up and answering. Readiness (database, storage and search
# answering) is /health/ready, for load balancers; a restart does not cure an outage there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8000'), timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
# The Procfile's web process; `exec` leaves no shell between tini and the server.
CMD ["sh", "-c", "exec vidpipe api --host 0.0.0.0 --port \"${PORT:-8000}\""]
