# CPU by default. For a GPU image:
#   docker build --build-arg BASE_IMAGE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    FACEREC_STATE_DIR=/var/lib/facerec
WORKDIR /srv/facerec

# Dependencies first, in their own layer: code changes don't reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install --extra-index-url ${TORCH_INDEX} -r /tmp/requirements.txt

COPY app ./app
COPY models ./models
COPY training ./training
COPY migrations ./migrations
COPY README.md ./
# The networks exported for the CPU runtimes (OpenVINO, ONNX Runtime) are made here, once, for the embedded defaults: the container's
# first start reads them (no ~10 s export, no PyTorch import); other settings export what they lack there.
ENV FACEREC_ONNX_CACHE_DIR=/srv/facerec/onnx
RUN pip install --no-deps -e . && python -m models.runtime --cache /srv/facerec/onnx \
 && useradd --system --home /srv/facerec facerec \
 && mkdir -p /var/lib/facerec && chown facerec /var/lib/facerec /srv/facerec/onnx
USER facerec

EXPOSE 8000
VOLUME ["/var/lib/facerec"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health').status != 200)"
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
