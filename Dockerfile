# One image for the API (the default command) and the Celery worker (compose overrides
# the command). Build: docker build -t descent .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DESCENT_DATA_DIR=/var/lib/descent

# Fashion-MNIST from Debian's package (/usr/share/datasets/fashion-mnist), so the book's
# data set is there out of the box; other IDX sets go in the data volume.
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --system --create-home --uid 10001 --user-group descent \
    && mkdir -p /var/lib/descent \
    && chown descent:descent /var/lib/descent

WORKDIR /srv/descent

# The runtime dependencies plus the `digits` extra (scikit-learn ships that data set);
# the `dev` extra (test and lint tools) stays out of the image.
COPY pyproject.toml ./
COPY app ./app
COPY trainer ./trainer
COPY worker ./worker
RUN pip install '.[digits]' && rm -rf build *.egg-info

USER descent

EXPOSE 8000

CMD ["uvicorn", "app.api.main:app", "--host", "0.0.0.0", "--port", "8000"]
