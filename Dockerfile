# The Tailor server. CPU by default; the CUDA variant takes PyPI's torch wheels, which bundle CUDA:
#   docker build -t tailor-serve .
#   docker build -t tailor-serve:cuda --build-arg TORCH_INDEX=https://pypi.org/simple .   (run with --gpus all)
# The model is mounted or baked in at /model (SageMaker: /opt/ml/model; Azure ML: $AZUREML_MODEL_DIR).
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TAILOR_HOME=/var/lib/tailor TAILOR_MODEL=/model

# torch first and pinned, from the chosen index, so the project's own install changes nothing about it
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --system --uid 10001 --home-dir /var/lib/tailor --create-home tailor
COPY docker/entrypoint.sh /usr/local/bin/tailor-entrypoint
RUN chmod 0755 /usr/local/bin/tailor-entrypoint

USER tailor
VOLUME ["/var/lib/tailor"]
EXPOSE 8000 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(os.environ.get('TAILOR_HEALTH_URL', 'http://127.0.0.1:8000/health'))"
ENTRYPOINT ["tailor-entrypoint"]
CMD ["serve"]
