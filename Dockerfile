# autorunner: one image for every role (serve, ingress, worker and the CLI).
#   docker build -t autorunner .
#   docker run --rm -e AUTO_SECRET=… -p 3000:3000 autorunner            # local mode (SQLite in /data)
#   docker compose up                                                   # cloud mode: see docker-compose.yml
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
# Only the runtime dependencies, at the versions the lock pins (the lock also holds dev tools).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/venv/bin/pip install --no-cache-dir --constraint requirements.lock .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data --create-home autorunner
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json \
    QUEUE_URL=sqlite:////data/autorunner.db
USER 10001
WORKDIR /data
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"3000\")}/healthz', timeout=2)"]
ENTRYPOINT ["autorunner"]
CMD ["serve"]
