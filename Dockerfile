# memgate: OpenAI-compatible memory proxy gateway.
#   docker build -t memgate .
#   docker run -p 8080:8080 -v memgate-data:/data -e MEMGATE_UPSTREAM_URL=https://api.openai.com/v1 memgate
# The install steps live in docker/install.sh (CI runs its `check` step without a Docker engine).
# The embedding model ships inside the package: no torch and no distillation anywhere in the build.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: install the runtime venv (pip, build tools and sources stay here) -------------
FROM ${PYTHON_IMAGE} AS builder
ENV MEMGATE_VENV=/opt/memgate/venv
COPY docker/install.sh /usr/local/bin/memgate-install
COPY pyproject.toml README.md /src/
COPY gateway /src/gateway
RUN memgate-install runtime /src \
 && memgate-install check

# --- runtime: slim, non-root, only what serves requests -------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/memgate/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    MEMGATE_VENV=/opt/memgate/venv \
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
# The image proves itself at build time: imports, the shipped model, the tokenizer, no torch.
RUN memgate-install check --slim
WORKDIR /data
VOLUME ["/data", "/etc/memgate/rules"]
EXPOSE 8080
# No curl in slim images: python asks /healthz on the port the gateway listens on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('MEMGATE_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
CMD ["memgate", "serve", "--host", "0.0.0.0"]
