"""Reading the official DiMSUM checkpoints (VinAIResearch/DiMSUM `DiM`, `--block-type combined`).

The official state dict uses the same module names as ours (`dimsum_core/network.py`), plus four persistent Haar filter
buffers per block (`freq_mamba.dwt.*`, `freq_mamba.idwt.filters`) that our reshape-based Haar does
not need. Everything about the architecture is inferred from tensor shapes.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from dimsum_core.checkpoint import atomic_directory_write, load_state_checked, write_weights
from dimsum_core.errors import CheckpointError
from dimsum_core.interfaces.model import FlowModel
from dimsum_core.models import create_model

_HAAR_BUFFER = re.compile(r"\.freq_mamba\.(dwt\.w_(ll|lh|hl|hh)|idwt\.filters)$")
_REQUIRED = ("pos_embed", "x_embedder.proj.weight", "final_layer.linear.weight",
             "blocks.0.spatial_mamba.mixer.in_proj.weight", "y_embedder.embedding_table.weight")


def read_official(path: Path, weights: str = "ema") -> dict[str, dict[str, torch.Tensor]]:
    """The state dicts in an official file: {'ema': ..., 'model': ...} (whichever exist), float32.

    Accepts a `.pt` pickle with `model`/`ema` entries (loaded with ``weights_only=True``), a bare state
    dict pickle (e.g. the Hub's `pytorch_model.bin`) or a safetensors file.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            raw: Any = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({exc})") from None
    else:
        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except (EOFError, zipfile.BadZipFile, RuntimeError, pickle.UnpicklingError, ValueError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "weights_only" in text or "Unsupported global" in text:
                raise CheckpointError(f"{path}: holds Python objects beyond tensors, refused by "
                                      f"weights_only=True loading; re-save only the state dicts") from None
            raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint ({text})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a state dict or a dict with 'model'/'ema', "
                              f"got {type(raw).__name__}")
    if any(k in raw for k in ("ema", "model")):
        found = {k: raw[k] for k in ("ema", "model") if isinstance(raw.get(k), dict)}
    else:
        found = {weights: raw}
    out = {}
    for name, sd in found.items():
        tensors = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        out[name] = {k: v.to(torch.float32) for k, v in tensors.items() if not _HAAR_BUFFER.search(k)}
    return out


def infer_config(sd: dict[str, torch.Tensor], num_classes: int | None = None) -> dict[str, Any]:
    """Our `dimsum` model keyword arguments for an official state dict."""
    missing = [k for k in _REQUIRED if k not in sd]
    if missing:
        raise CheckpointError(f"not a DiMSUM checkpoint: no '{missing[0]}' tensor "
                              f"({len(sd)} tensors, e.g. {next(iter(sd), 'none')})")
    hidden, tokens = sd["pos_embed"].shape[-1], sd["pos_embed"].shape[1]
    patch, in_channels = sd["x_embedder.proj.weight"].shape[-1], sd["x_embedder.proj.weight"].shape[1]
    grid = int(round(tokens**0.5))
    if grid * grid != tokens:
        raise CheckpointError(f"pos_embed has {tokens} tokens, not a square grid: not a DiMSUM checkpoint")
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    rows = sd["y_embedder.embedding_table.weight"].shape[0]
    if num_classes is None:  # official tables have num_classes + 1 rows when trained with label dropout
        num_classes = 1 if rows == 1 else rows - 1
    if rows not in (num_classes, num_classes + 1):
        raise CheckpointError(f"label table has {rows} rows, which does not fit num_classes={num_classes}")
    a_log = sd["blocks.0.spatial_mamba.mixer.A_log"]
    d_inner, d_state = a_log.shape
    w3 = sd.get("blocks.0.mlp.w3.weight", sd.get("blocks.0.mlp.fc2.weight"))
    if w3 is None:
        raise CheckpointError("not a DiMSUM checkpoint: block 0 has no MLP (mlp.w3 / mlp.fc2)")
    has_wavelet = any(k.startswith("blocks.0.freq_mamba.") for k in sd)
    branch = hidden // 2 if has_wavelet else hidden
    mixer = {
        "name": "mamba",
        "d_state": int(d_state),
        "d_conv": int(sd["blocks.0.spatial_mamba.mixer.conv1d.weight"].shape[-1]),
        "expand": int(d_inner // branch),
        "dt_rank": int(sd["blocks.0.spatial_mamba.mixer.dt_proj.weight"].shape[1]),
        "conditioning": "official" if "blocks.0.spatial_mamba.mixer.cond_proj.weight" in sd else "none",
    }
    return {
        "input_size": grid * patch, "in_channels": int(in_channels), "patch_size": int(patch),
        "hidden_size": int(hidden), "depth": depth, "num_classes": num_classes,
        "null_class": rows == num_classes + 1, "mixer": mixer,
        "branches": "both" if has_wavelet else "spatial",
        "transformer": "shared" if any(k.startswith("attn_block.") for k in sd) else "none",
        "gated_mlp": "blocks.0.mlp.w12.weight" in sd, "mlp_ratio": w3.shape[1] / hidden,
    }


def model_from_official(sd: dict[str, torch.Tensor], num_classes: int | None = None) -> FlowModel:
    """Build our model for an official state dict and load it (strict, with readable mismatches)."""
    config = infer_config(sd, num_classes)
    try:
        model = create_model("dimsum", **config)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"the tensors do not fit any DiMSUM architecture ({exc})") from None
    load_state_checked(model, sd, "official checkpoint")
    return model


def convert_official(src: Path, out: Path, num_classes: int | None = None) -> dict[str, Any]:
    """Write our checkpoint directory for an official file; returns a summary."""
    found = read_official(src)
    main_name = "ema" if "ema" in found else next(iter(found))
    model = model_from_official(found[main_name], num_classes)
    other = None
    if "model" in found and main_name == "ema":
        other = model_from_official(found["model"], num_classes)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()

    def write(tmp: Path) -> None:
        # with both entries: model.safetensors = raw weights, ema.safetensors = EMA (used for sampling)
        if other is not None:
            write_weights(tmp, other, model)
        else:
            write_weights(tmp, model)
        (tmp / "source.json").write_text(json.dumps({"converted_from": str(src), "sha256": digest,
                                                     "entries": sorted(found)}, indent=1))

    atomic_directory_write(out, write)
    return {"config": model.config(), "entries": sorted(found),
            "params": sum(p.numel() for p in model.parameters())}
