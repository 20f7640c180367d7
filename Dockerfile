# intmon in a container: slim, non-root, database on a volume, config mounted read-only.
#
#   docker build -t intmon .
#   docker run -d --name intmon -p 9464:9464 \
#     -v intmon-data:/var/lib/intmon \
#     -v "$PWD/monitor.yaml:/etc/intmon/monitor.yaml:ro" \
#     --env-file intmon.env intmon
#
# Inside a container the config must say `monitor.listen: 0.0.0.0:9464`: 127.0.0.1 is the
# container's own loopback, which neither `-p` nor Prometheus can reach.
# packaging/container.yaml is a starting point.

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A venv copied whole into the runtime stage: no compilers or build files ship in the image.
RUN python -m venv /opt/intmon
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY checks ./checks
# With psycopg: the same image runs on SQLite or as one of several replicas on Postgres.
RUN /opt/intmon/bin/pip install ".[postgres]"

FROM python:3.12-slim
ENV PATH=/opt/intmon/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INTMON_CONFIG=/etc/intmon/monitor.yaml \
    INTMON_HEALTHCHECK_URL=http://127.0.0.1:9464/healthz
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it and volume ownership is stable.
RUN groupadd --system --gid 10001 intmon \
 && useradd --system --uid 10001 --gid intmon --no-create-home \
      --home-dir /var/lib/intmon --shell /usr/sbin/nologin intmon \
 && mkdir -p /var/lib/intmon /etc/intmon \
 && chown intmon:intmon /var/lib/intmon
COPY --from=build /opt/intmon /opt/intmon
USER 10001:10001
WORKDIR /var/lib/intmon
VOLUME /var/lib/intmon
EXPOSE 9464
# No curl in slim images: Python's urllib does it. Any error or non-2xx answer exits 1.
# Moved monitor.listen to another port? Set INTMON_HEALTHCHECK_URL to match.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('INTMON_HEALTHCHECK_URL', 'http://127.0.0.1:9464/healthz'), timeout=4)"]
# SIGTERM is a graceful stop: in-flight checks finish, pending rows are written. Give it
# monitor.shutdown_grace plus a few seconds: docker stop -t 20.
STOPSIGNAL SIGTERM
CMD ["intmon", "run"]
