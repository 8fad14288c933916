"""Checkpoint directories.

Layout (every file optional except ``model.json`` and ``model.safetensors``)::

    CKPT/
      model.json          registry name + keyword arguments that rebuild the network
      model.safetensors   the trained weights
      ema.safetensors     EMA weights (sampling uses them by default)
      recipe.yaml         the resolved recipe that produced it
      train_state.pt      optimizer, step, epoch, RNG and sampler state (loads with weights_only=True)

Everything is written to a temporary directory first and renamed into place, so an interrupted save
never damages the previous checkpoint, and an existing checkpoint directory is never written over.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from dimsum_core.errors import CheckpointError
from dimsum_core.interfaces.model import FlowModel

MODEL_JSON = "model.json"
MODEL_WEIGHTS = "model.safetensors"
EMA_WEIGHTS = "ema.safetensors"


def state_dict_for_saving(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of the persistent state (shared tensors de-duplicated by safetensors)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def _save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    save_file(state, str(path))
    # safetensors creates its files with mode 0600; give them the mode every other file gets (umask)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_weights(directory: Path, model: FlowModel, ema: torch.nn.Module | None = None) -> None:
    """Write ``model.json``, ``model.safetensors`` (and ``ema.safetensors``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_JSON).write_text(json.dumps(model.config(), indent=1, sort_keys=True))
    _save_weights(state_dict_for_saving(model), directory / MODEL_WEIGHTS)
    if ema is not None:
        _save_weights(state_dict_for_saving(ema), directory / EMA_WEIGHTS)


#: ``.NAME.tmp-PID``: a directory being written (left behind only by a killed process)
TEMPORARY_PREFIX, TEMPORARY_MARK = ".", ".tmp-"


def atomic_directory_write(final: Path, write: Any) -> None:
    """Call ``write(tmp_dir)`` and rename the result to ``final``; on failure ``final`` is untouched.

    ``final`` must not exist yet (an empty directory is fine): nothing is ever written over."""
    final = Path(final)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise CheckpointError(f"{final} already exists; it is never written over (move it away or use "
                              f"another output path)")
    tmp = final.with_name(f"{TEMPORARY_PREFIX}{final.name}{TEMPORARY_MARK}{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        os.replace(tmp, final)  # atomic; replaces at most an empty directory
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary directories that killed writers left in ``directory``; returns them.
    Only call this while holding the directory's lock (:func:`lock_directory`)."""
    if not directory.is_dir():
        return []
    stale = sorted(p for p in directory.iterdir()
                   if p.is_dir() and p.name.startswith(TEMPORARY_PREFIX) and TEMPORARY_MARK in p.name)
    for path in stale:
        shutil.rmtree(path)
    return stale


def read_model_config(directory: Path) -> dict[str, Any]:
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    if directory.is_file():
        raise CheckpointError(f"{directory}: is a file; a dimsum checkpoint is a directory "
                              f"(convert an official .pt with `dimsum convert-official {directory} --out DIR`)")
    path = directory / MODEL_JSON
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a dimsum checkpoint (no {MODEL_JSON}); give a checkpoint "
                              f"directory (OUT_DIR/{CHECKPOINTS}/NNNNNNN) or a run's OUT_DIR for its newest")
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


def read_weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a safetensors file, from its header alone (nothing is loaded)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({exc})") from None


def check_shapes(own: dict[str, tuple[int, ...]], given: dict[str, tuple[int, ...]], source: str) -> None:
    """A one-line error naming the mismatching keys and shapes of two {key: shape} tables."""
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    shapes = [f"{k} {tuple(given[k])} vs model {tuple(own[k])}" for k in own if k in given and own[k] != given[k]]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[0]}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise CheckpointError(f"{source}: weights do not fit the model: " + "; ".join(parts))


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the mismatching keys and shapes, and
    refusing non-float or non-finite values where the model holds floats (they sample black images)."""
    own = model.state_dict()
    check_shapes({k: tuple(v.shape) for k, v in own.items()}, {k: tuple(v.shape) for k, v in state.items()},
                 source)
    for key, value in own.items():
        if not value.is_floating_point():
            continue
        if not state[key].is_floating_point():
            raise CheckpointError(f"{source}: {key} holds {state[key].dtype} values where the model has floats; "
                                  f"the file is not a checkpoint of this model")
        if not bool(torch.isfinite(state[key]).all()):
            raise CheckpointError(f"{source}: {key} holds NaN or infinite values (the run had diverged "
                                  f"when it was saved); use an earlier checkpoint")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


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
    """``train_state.pt``, checked to hold what a resume reads (a CheckpointError names what is wrong)."""
    path = directory / TRAIN_STATE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {TRAIN_STATE}, so it cannot resume training "
                              f"(it can still be sampled from)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ... all mean "not usable"
        raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a training state (a {type(state).__name__}, not a mapping)")
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: not a training state (step is {step!r}, not a step count)")
    optimizer = state.get("optimizer")
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list)):
        raise CheckpointError(f"{path}: not a training state (no optimizer state)")
    if not isinstance(state.get("sampler", {}), dict):
        raise CheckpointError(f"{path}: not a training state (the sampler entry is not a mapping)")
    return state


def training_checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoint directories of a run, oldest first (temporary, hidden and set-aside names excluded)."""
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
    """The newest complete checkpoint of a run, or None (a quick look: resuming checks the weights too)."""
    for directory in reversed(training_checkpoints(out_dir)):
        if is_complete_checkpoint(directory):
            return directory
    return None


def set_aside(directory: Path, why: str) -> Path:
    """Rename a checkpoint directory that a run cannot use to ``NAME.WHY`` (``NAME.WHY-2``, ...) beside it,
    so no later save writes over it and no resume picks it; returns the new path."""
    target = directory.with_name(f"{directory.name}.{why}")
    n = 1
    while target.exists():
        n += 1
        target = directory.with_name(f"{directory.name}.{why}-{n}")
    directory.rename(target)
    return target


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it holds a checkpoint; for a run's ``out_dir`` or its ``checkpoints/`` folder,
    the newest complete checkpoint in it (what ``resume: auto`` would continue from)."""
    path = Path(path).expanduser()
    if (path / MODEL_JSON).is_file():
        return path
    run = path.parent if path.name == CHECKPOINTS else path
    if (run / CHECKPOINTS).is_dir():
        newest = newest_checkpoint(run)
        if newest is None:
            raise CheckpointError(f"{path}: the run has no complete checkpoint yet (training writes one every "
                                  f"checkpoint.every steps and at the end)")
        return newest
    if not path.exists() and path.parent.name == CHECKPOINTS:
        newest = newest_checkpoint(path.parent.parent)
        if newest is not None:
            raise CheckpointError(f"{path}: no such checkpoint; the newest is {newest} (the run folder "
                                  f"{path.parent.parent} also opens it)")
    return path


def prune_checkpoints(out_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all); returns what was deleted."""
    if keep_last <= 0:
        return []
    old = training_checkpoints(out_dir)[:-keep_last]
    for directory in old:
        shutil.rmtree(directory)
    return old
