# One image for every application service; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Each prefork child runs one fit; BLAS or OpenMP threads on top would oversubscribe.
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY api ./api
COPY workers ./workers
# The draw source is a service of its own in compose; the local-stack launcher is not
# shipped: in a container, compose starts the processes.
COPY drawsource ./drawsource
COPY cli ./cli
RUN pip install .

# The application never needs root; no secret is baked in (tokens come from the environment).
RUN useradd --create-home --uid 10001 emcoins
USER emcoins

EXPOSE 8000
CMD ["gunicorn", "-b", "0.0.0.0:8000", "-w", "2", "-k", "api.errors.JSONErrorWorker", "--threads", "8", "api:create_app()"]
