# hybridbus: MQTT + NATS server.  Build: `docker build -t hybridbus .`
# Ports: 4222 NATS, 1883 MQTT, 8222 monitoring.  Store: the /data volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package build needs, so code edits elsewhere keep the cache.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hybridbus ./hybridbus
RUN pip install . && cd / && rm -rf /src

COPY conf/docker.conf /etc/hybridbus/server.conf

# Not root.  A named volume mounted on /data starts with this ownership.
RUN useradd --system --uid 10001 --home-dir /data hybridbus \
    && mkdir -p /data && chown hybridbus /data
USER hybridbus
WORKDIR /data
VOLUME ["/data"]

EXPOSE 4222 1883 8222

HEALTHCHECK --interval=10s --timeout=5s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8222/healthz', timeout=3).status == 200 else 1)"]

# Exec form: hybridbus is PID 1 and gets SIGTERM directly for a clean shutdown.
CMD ["hybridbus", "serve", "-c", "/etc/hybridbus/server.conf"]
