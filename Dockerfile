# memgate: OpenAI-compatible memory proxy gateway.
#   docker build -t memgate .
#   docker run -p 8080:8080 -v memgate-data:/data -e MEMGATE_UPSTREAM_URL=https://api.openai.com/v1 memgate
# The install steps live in docker/install.sh (CI runs its `check` step without a Docker engine).
# Build args: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu fetches the smaller CPU-only
# torch wheel; torch is only used in the builder to distil the embedding model and is discarded.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: install the runtime venv and bake the embedding model -------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=
ENV MEMGATE_VENV=/opt/memgate/venv \
    MEMGATE_MODEL_CACHE=/opt/memgate/models \
    MEMGATE_BUILD_VENV=/opt/memgate-build \
    TORCH_SPEC=${TORCH_SPEC} \
    TORCH_INDEX_URL=${TORCH_INDEX_URL}
COPY docker/install.sh /usr/local/bin/memgate-install
COPY pyproject.toml /src/
COPY gateway /src/gateway
RUN memgate-install runtime /src \
 && memgate-install model /src \
 && memgate-install check

# --- runtime: slim, non-root, only what serves requests -------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/memgate/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    MEMGATE_VENV=/opt/memgate/venv \
    MEMGATE_MODEL_CACHE=/opt/memgate/models \
    MEMGATE_HOST=0.0.0.0 \
    MEMGATE_PORT=8080 \
    MEMGATE_DATA_DIR=/data \
    MEMGATE_RULES=/etc/memgate/rules
RUN useradd --system --uid 10001 --user-group --home-dir /home/memgate --create-home memgate \
 && mkdir -p /data /etc/memgate/rules \
 && chown memgate:memgate /data
COPY --from=builder /opt/memgate /opt/memgate
COPY docker/install.sh /usr/local/bin/memgate-install
COPY rules /etc/memgate/rules
USER memgate
# The image proves itself at build time: imports, the baked model, the tokenizer, no torch.
RUN memgate-install check --slim
WORKDIR /data
VOLUME ["/data", "/etc/memgate/rules"]
EXPOSE 8080
# No curl in slim images: python asks /healthz on the port the gateway listens on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('MEMGATE_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
CMD ["memgate", "serve", "--host", "0.0.0.0"]
