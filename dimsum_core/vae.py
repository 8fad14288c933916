"""The Stable Diffusion VAE (diffusers ``AutoencoderKL``) from a LOCAL directory: load, encode, decode.

Latents are ``posterior sample * scaling_factor`` with the factor read from the VAE's config (0.18215
for sd-vae-ft-ema/mse); decoding divides by the same factor. Nothing is ever downloaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from dimsum_core.errors import DataError

INSTALL_HINT = 'pip install -e ".[vae]"'
FETCH_HINT = ("put a diffusers AutoencoderKL there (config.json + diffusion_pytorch_model.safetensors), "
              "e.g. `hf download stabilityai/sd-vae-ft-ema --local-dir DIR` (huggingface-hub's CLI)")


def autoencoder_class():  # noqa: ANN201 - diffusers type
    """diffusers' ``AutoencoderKL``, or a DataError saying why it cannot be imported: not installed, or
    installed but broken (e.g. a torchvision built for another torch, which diffusers imports)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from diffusers import AutoencoderKL
    except ImportError as exc:
        if exc.name == "diffusers":
            raise DataError(f"the VAE needs diffusers, which is not installed: {INSTALL_HINT}") from None
        raise DataError(f"diffusers is installed but does not import ({_first_line(exc)}); repair the "
                        f"install (a torchvision matching torch, or uninstall torchvision)") from None
    except Exception as exc:  # broken dependency of diffusers: any error type
        raise DataError(f"diffusers is installed but does not import ({_first_line(exc)}); repair the "
                        f"install (a torchvision matching torch, or uninstall torchvision)") from None
    return AutoencoderKL


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def load_vae(path: str | Path, device: torch.device | str = "cpu"):  # noqa: ANN201 - diffusers type
    """``AutoencoderKL.from_pretrained(path, local_files_only=True)``, in eval mode, frozen."""
    path = Path(path).expanduser()
    AutoencoderKL = autoencoder_class()  # noqa: N806 - a class
    if not path.is_dir():
        raise DataError(f"{path}: no such VAE directory; {FETCH_HINT}")
    if not (path / "config.json").is_file():
        raise DataError(f"{path}: no config.json, so not a diffusers VAE directory; {FETCH_HINT}")
    try:
        vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot load the VAE ({first}); {FETCH_HINT}") from None
    return vae.to(device).eval().requires_grad_(False)


def scaling_factor(vae) -> float:  # noqa: ANN001
    return float(vae.config.scaling_factor)


def downsampling(vae) -> int:  # noqa: ANN001
    """How many image pixels a latent's side covers: 2 for each encoder stage after the first (8 for the SD VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def encode(vae, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:  # noqa: ANN001
    """Images (N, 3, H, W) in [-1, 1] -> latents: a posterior sample times the scaling factor."""
    dist = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    noise = torch.randn(dist.mean.shape, generator=generator, device=dist.mean.device, dtype=dist.mean.dtype)
    return ((dist.mean + dist.std * noise) * scaling_factor(vae)).float()


@torch.no_grad()
def decode(vae, latents: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """Latents -> images (N, 3, H, W) in about [-1, 1] (not clamped)."""
    return vae.decode(latents.to(vae.device, vae.dtype) / scaling_factor(vae)).sample.float()
