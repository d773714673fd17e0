# One image for every service of the pool: router and device workers (python -m workers ...) and Flower.
FROM python:3.11-slim

# OpenCV, which ultralytics imports, needs libGL and GLib at import time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    YOLO_OFFLINE=1

WORKDIR /app

# Dependencies first (torch and its CUDA runtime are most of the image): a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN touch celeryconfig.py \
 && pip install . \
 && pip uninstall -y model-zoo-enrichment \
 && rm -rf build celeryconfig.py

COPY celeryconfig.py ./
COPY tasks ./tasks
COPY workers ./workers
COPY model_cache ./model_cache
COPY prompt_formatting ./prompt_formatting
COPY scripts ./scripts
RUN pip install --no-deps . && rm -rf build *.egg-info

RUN useradd --create-home --uid 10001 app
USER app
ENV MODELS_DIR=/models

# Each compose service names its own command; this one is the router/assemble worker.
CMD ["python", "-m", "workers", "router"]
