"""Opening a checkpoint for sampling: the model (EMA by default), and the VAE decoder when the model
was trained on latents."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from dimsum_core.checkpoint import EMA_WEIGHTS, MODEL_WEIGHTS, RECIPE, resolve_checkpoint
from dimsum_core.config.load import parse_yaml
from dimsum_core.config.nodes import split_node
from dimsum_core.errors import CheckpointError, DimsumError
from dimsum_core.interfaces.model import FlowModel
from dimsum_core.models import load_model
from dimsum_core.sampling.generate import Decoder


@dataclass
class LatentOrigin:
    """Whether the training data were VAE latents, and what the recipe says about the VAE."""

    latent: bool
    vae_hint: str | None = None


@dataclass
class LoadedCheckpoint:
    path: Path
    model: FlowModel
    #: the weights file actually loaded (ema.safetensors unless --no-ema or absent)
    weights_file: Path
    decode: Decoder | None
    origin: LatentOrigin

    def weights_sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.weights_file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


def _recipe(directory: Path) -> dict[str, Any] | None:
    path = directory / RECIPE
    if not path.is_file():
        return None
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path}: unreadable YAML ({exc})") from None
    return data if isinstance(data, dict) else None


def latent_origin(directory: Path, model: FlowModel) -> LatentOrigin:
    """From ``recipe.yaml``: a ``vae:`` key (pixels encoded during training) or a latent dataset
    (``is_latent``). Without a recipe: any model whose input is not 3-channel is taken as latent."""
    from dimsum_core.plugin.manager import registry

    recipe = _recipe(directory)
    if recipe is None or "data" not in recipe:
        return LatentOrigin(model.in_channels != 3)
    if recipe.get("vae"):
        return LatentOrigin(True, str(recipe["vae"]))
    name, kwargs = split_node(recipe["data"], "data")
    if name not in registry("dataset"):
        return LatentOrigin(model.in_channels != 3)
    if not getattr(registry("dataset").get(name).factory, "is_latent", False):
        return LatentOrigin(False)
    hint = None
    if kwargs.get("root"):
        from dimsum_core.data.latent_store import read_info

        try:
            hint = read_info(kwargs["root"]).vae
        except DimsumError:
            hint = None
    return LatentOrigin(True, hint)


def open_checkpoint(path: str | Path, *, ema: bool = True, device: torch.device | str = "cpu",
                    vae: str | None = None) -> LoadedCheckpoint:
    """Load for sampling; a latent model needs ``vae`` (a local diffusers AutoencoderKL directory).
    A run's ``out_dir`` opens its newest checkpoint."""
    path = resolve_checkpoint(path)
    model = load_model(path, ema=ema, device=str(device))
    weights = path / EMA_WEIGHTS if ema and (path / EMA_WEIGHTS).is_file() else path / MODEL_WEIGHTS
    origin = latent_origin(path, model)
    decode = None
    if origin.latent:
        if vae is None:
            trained = f" (training used {origin.vae_hint})" if origin.vae_hint else ""
            raise DimsumError(f"{path}: this model was trained on VAE latents{trained}; pass --vae DIR, a local "
                              f"diffusers AutoencoderKL directory, to decode its samples")
        from dimsum_core import vae as vae_io

        autoencoder = vae_io.load_vae(vae, device)
        decode = lambda latents: vae_io.decode(autoencoder, latents)  # noqa: E731
    elif vae is not None:
        raise DimsumError(f"{path}: this model was trained on pixels; drop --vae")
    return LoadedCheckpoint(path, model, weights, decode, origin)
