# One image for the production shape (docker-compose.yml):
#   the API    - the default command (uvicorn on API_HOST:API_PORT, api.app:app_factory)
#   the worker - the same image with `python worker.py`
# Configuration comes from environment variables only (see the configuration table in README.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ENVIRONMENT=production \
    API_HOST=0.0.0.0 \
    API_PORT=8000

WORKDIR /app

# The locked dependencies first (exact versions and hashes, requirements/runtime.txt; `make lock` writes it),
# so that this layer is reused while only the code changes.
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip install --require-hashes -r /tmp/runtime.txt && rm /tmp/runtime.txt

# Then the code (and the `regime` command-line tool).
COPY . .
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app \
    && chown -R app:app /app \
    && install -d -o app -g app /var/lib/special-measures/audit-checkpoints  # AUDIT_CHECKPOINT_DIR (compose volume)

USER app
EXPOSE 8000
CMD ["sh", "-c", "exec uvicorn api.app:app_factory --factory --host \"$API_HOST\" --port \"$API_PORT\""]
