# farmsync image. Default command: `farmsync serve` on port 8088 (every route plus the scheduler), like the
# predecessor's container; the same image runs any function target with
# `functions-framework --target=<name> --source=/app/functions/main.py` (deploy/lan/compose.functions.yaml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    PORT=8088

# curl: the health check and the compose scheduler (deploy/lan/bin/farmsync-schedule, farmsync-tick).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# The pinned runtime set first, so this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY pyproject.toml README.md ./
# Only the product: the simulator and the demo (shared/farmsync_sim) stay out of the image.
COPY shared/farmsync ./shared/farmsync
COPY functions ./functions
COPY deploy/lan/bin/farmsync-tick deploy/lan/bin/farmsync-schedule /usr/local/bin/
# --no-deps: the dependencies are exactly the lock, requirements.txt, installed above (pyproject.toml holds
# the ranges it was resolved from; tests/unit/test_dependencies.py keeps the two in step).
RUN pip install --no-deps . \
 && farmsync --help >/dev/null

VOLUME ["/data"]
EXPOSE 8088
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null || exit 1
CMD ["farmsync", "serve"]
