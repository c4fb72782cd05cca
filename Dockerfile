# syntax=docker/dockerfile:1
# Stepwise: one image for web, workers, beat and migrations (docker-compose.yml picks the
# command). Build: docker build -t stepwise .

# --- Stage 1: the annotator page (TypeScript + KaTeX) built by Vite into frontend/dist ----------
FROM node:22-slim AS frontend
WORKDIR /build/frontend
# Lockfile first: the npm layer is reused until dependencies change.
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

# --- Stage 2: the Python application ----------------------------------------------------------
FROM python:3.11-slim AS app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    STEPWISE_VAR_DIR=/app/var \
    HF_HOME=/app/var/hf-home \
    MPLCONFIGDIR=/app/var/matplotlib \
    DEBUG=0
WORKDIR /app

# Dependencies in their own layer, read from pyproject.toml so there is one list to maintain.
# torch comes from PyPI with CUDA support, which the ml worker needs; for a CPU-only image pass
# --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
ARG PIP_EXTRA_INDEX_URL=""
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY manage.py ./
COPY stepwise/ stepwise/
COPY labeling/ labeling/
COPY selector/ selector/
COPY jobs/ jobs/
COPY demo/ demo/
# Editable install without dependencies: the code runs from /app, where the templates are.
RUN pip install --no-deps -e .
COPY --from=frontend /build/frontend/dist frontend/dist

# Static files are collected at build time into the image (whitenoise serves them); the
# placeholder key only satisfies settings at build time and is not in the running containers.
RUN SECRET_KEY=collectstatic-only-build-time-placeholder-key-not-used-at-run-time python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --home-dir /app stepwise \
    && mkdir -p var/exports var/selectors var/media var/simulations \
        var/hf-home var/matplotlib \
    && chown -R stepwise:stepwise var
USER stepwise

EXPOSE 8000
CMD ["gunicorn", "stepwise.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--access-logfile", "-"]
