"""Checkpoint directories.

Layout (every file optional except ``model.json`` and ``model.safetensors``)::

    CKPT/
      model.json          registry name + keyword arguments that rebuild the network
      model.safetensors   the trained weights
      ema.safetensors     EMA weights (sampling uses them by default)
      recipe.yaml         the resolved recipe that produced it
      train_state.pt      optimizer, step, epoch, RNG and sampler state (loads with weights_only=True)

Everything is written to a temporary directory first and renamed into place, so an interrupted save
never damages the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dimsum_core.errors import CheckpointError
from dimsum_core.interfaces.model import FlowModel

MODEL_JSON = "model.json"
MODEL_WEIGHTS = "model.safetensors"
EMA_WEIGHTS = "ema.safetensors"


def state_dict_for_saving(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of the persistent state (shared tensors de-duplicated by safetensors)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def write_weights(directory: Path, model: FlowModel, ema: torch.nn.Module | None = None) -> None:
    """Write ``model.json``, ``model.safetensors`` (and ``ema.safetensors``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_JSON).write_text(json.dumps(model.config(), indent=1, sort_keys=True))
    save_file(state_dict_for_saving(model), str(directory / MODEL_WEIGHTS))
    if ema is not None:
        save_file(state_dict_for_saving(ema), str(directory / EMA_WEIGHTS))


def atomic_directory_write(final: Path, write: Any) -> None:
    """Call ``write(tmp_dir)`` and rename the result to ``final``; on failure ``final`` is untouched."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_model_config(directory: Path) -> dict[str, Any]:
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    if directory.is_file():
        raise CheckpointError(f"{directory}: is a file; a dimsum checkpoint is a directory "
                              f"(convert an official .pt with `dimsum convert-official {directory} --out DIR`)")
    path = directory / MODEL_JSON
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a dimsum checkpoint (no {MODEL_JSON})")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: unreadable ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(config, dict) or "name" not in config:
        raise CheckpointError(f"{path}: needs a 'name' key naming the model preset")
    return config


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({exc})") from None


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the mismatching keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[0]}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise CheckpointError(f"{source}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def load_model_from_checkpoint(directory: Path, *, ema: bool = True, device: str = "cpu") -> FlowModel:
    from dimsum_core.models import create_model

    config = read_model_config(directory)
    name = config.pop("name")
    model = create_model(name, **config)
    weights = directory / EMA_WEIGHTS if ema and (directory / EMA_WEIGHTS).is_file() else directory / MODEL_WEIGHTS
    load_state_checked(model, read_weights(weights), str(weights))
    return model.to(device).eval()


# -- training checkpoints ----------------------------------------------------------------------------
# A training run keeps its checkpoints as OUT_DIR/checkpoints/NNNNNNN (the step, zero-padded).

TRAIN_STATE = "train_state.pt"
RECIPE = "recipe.yaml"
CHECKPOINTS = "checkpoints"


def checkpoint_name(step: int) -> str:
    return f"{step:07d}"


def write_train_state(directory: Path, state: dict[str, Any]) -> None:
    """``train_state.pt``: plain tensors, numbers, strings, lists and dicts only, so it loads with
    ``torch.load(weights_only=True)``."""
    torch.save(state, directory / TRAIN_STATE)


def read_train_state(directory: Path) -> dict[str, Any]:
    path = directory / TRAIN_STATE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {TRAIN_STATE}, so it cannot resume training "
                              f"(it can still be sampled from)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ... all mean "not usable"
        raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__})") from None


def training_checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoint directories of a run, oldest first (temporary and hidden names excluded)."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def is_complete_checkpoint(directory: Path) -> bool:
    """Every file a resume needs is present and the training state opens."""
    if not all((directory / f).is_file() for f in (MODEL_JSON, MODEL_WEIGHTS, EMA_WEIGHTS, TRAIN_STATE)):
        return False
    try:
        read_train_state(directory)
    except CheckpointError:
        return False
    return True


def newest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run (``resume: auto``), or None."""
    for directory in reversed(training_checkpoints(out_dir)):
        if is_complete_checkpoint(directory):
            return directory
    return None


def prune_checkpoints(out_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all); returns what was deleted."""
    if keep_last <= 0:
        return []
    old = training_checkpoints(out_dir)[:-keep_last]
    for directory in old:
        shutil.rmtree(directory)
    return old
