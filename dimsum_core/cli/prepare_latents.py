"""``dimsum prepare-latents``: encode an image folder once into a memory-mapped latent store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import click
import numpy as np
import torch
from rich.console import Console

from dimsum_core.data import latent_store
from dimsum_core.data.image_files import find_images, load_image
from dimsum_core.errors import DataError
from dimsum_core.progress import TaskProgress


def _source_id(root: Path, files: list[Path], labels: list[int], resolution: int, flips: int) -> str:
    h = hashlib.sha1(f"{resolution}:{flips}".encode())
    for path, label in zip(files, labels, strict=True):
        h.update(f"{path.relative_to(root)}\0{path.stat().st_size}\0{label}\n".encode())
    return h.hexdigest()


def prepare_latents(image_dir: str | Path, vae_dir: str | Path, out: str | Path, *, resolution: int = 256,
                    batch_size: int = 32, labels: str = "auto", flip: bool = True, seed: int = 0,
                    on_bad_image: str = "skip", device: str = "auto", console: Console | None = None) -> Path:
    """Encode every image (and its mirror image) to ``posterior sample * scaling_factor``.

    Resumable: rows are written in order and the sidecar's ``done`` advances after each batch is
    flushed, so a rerun after a kill continues where it stopped. Each batch's posterior noise is
    seeded by (seed, first index), so a resumed store equals an uninterrupted one.
    """
    from dimsum_core.vae import downsampling, encode, load_vae

    if batch_size < 1:
        raise DataError(f"--batch-size {batch_size}: use 1 or more")
    if resolution < 1:
        raise DataError(f"--resolution {resolution}: use 1 or more")
    console = console or Console(stderr=True)
    out = Path(out).expanduser()
    found = find_images(image_dir, labels, on_bad_image)  # type: ignore[arg-type]
    if found.skipped:
        console.print(f"[yellow]skipped {len(found.skipped)} unreadable image(s)")
    flips = 2 if flip else 1
    source = _source_id(found.root, found.files, found.labels, resolution, flips)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    vae = load_vae(vae_dir, dev)
    if resolution % (factor := downsampling(vae)):
        raise DataError(f"--resolution {resolution}: use a multiple of {factor}, the VAE's downsampling factor")

    info: latent_store.LatentInfo | None = None
    latents = None
    if (out / latent_store.SIDECAR).is_file():
        info = latent_store.read_info(out)
        if info.source != source or info.vae != str(Path(vae_dir).expanduser()):
            raise DataError(f"{out}: holds latents of another image set, resolution or VAE; "
                            f"use another --out (nothing was changed)")
        if info.complete:
            console.print(f"{out}: already complete ({info.count} images)")
            return out
        latents = latent_store.open_latents(out, info, writable=True)
        console.print(f"{out}: resuming at image {info.done} of {info.count}")

    n = len(found.files)
    start = info.done if info else 0
    with TaskProgress(console, "encode", n, completed=start) as progress:
        generator = torch.Generator(dev)
        while start < n:
            stop = min(start + batch_size, n)
            images = torch.stack([load_image(p, resolution) for p in found.files[start:stop]])
            if flip:
                images = torch.cat([images, images.flip(-1)])
            generator.manual_seed(seed * 1_000_003 + start)
            z = encode(vae, images.to(dev), generator).cpu().numpy()
            if info is None:  # the latent shape is known once the first batch is encoded
                info = latent_store.LatentInfo(
                    vae=str(Path(vae_dir).expanduser()), scaling_factor=float(vae.config.scaling_factor),
                    shape=list(z.shape[1:]), count=n, flips=flips, resolution=resolution,
                    num_classes=len(found.classes), classes=found.classes, source=source)
                latents = latent_store.create_arrays(out, info, np.asarray(found.labels))
            m = stop - start
            latents[start:stop] = z[:m]
            if flip:
                latents[n + start:n + stop] = z[m:]
            latents.flush()
            info.done = stop
            latent_store.write_info(out, info)  # only after the rows are on disk
            progress.update(stop)
            start = stop
    console.print(f"wrote {out}: {n} images x {flips} flip state(s), latents {tuple(info.shape)}, "
                  f"scaling factor {info.scaling_factor}")
    return out


@click.command("prepare-latents")
@click.argument("image_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--vae", "vae_dir", required=True, type=click.Path(path_type=Path),
              help="Local diffusers AutoencoderKL directory (e.g. a download of stabilityai/sd-vae-ft-ema).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory (the latent store).")
@click.option("--resolution", default=256, show_default=True, help="Image side after the ADM center crop.")
@click.option("--batch-size", default=32, show_default=True, help="Images per VAE batch (x2 with flips).")
@click.option("--labels", type=click.Choice(["auto", "folders", "none"]), default="auto", show_default=True,
              help="Class labels from sub-folders (auto: when sub-folders hold images).")
@click.option("--flip/--no-flip", default=True, show_default=True, help="Also encode the mirror images.")
@click.option("--seed", default=0, show_default=True, help="Seed of the posterior samples.")
@click.option("--on-bad-image", type=click.Choice(["skip", "error"]), default="skip", show_default=True,
              help="Skip (and count) unreadable images, or stop at the first one.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def prepare_latents_command(image_dir: Path, vae_dir: Path, out: Path, resolution: int, batch_size: int,
                            labels: str, flip: bool, seed: int, on_bad_image: str, device: str) -> None:
    """Encode IMAGE_DIR with a local VAE into a latent store for the `latents` dataset.

    Every image is ADM center-cropped, encoded plain and mirrored (both flip states), and stored as
    a posterior sample times the VAE's scaling factor (read from its config) in a memory-mapped
    latents.npy, with labels.npy and a latents.json sidecar. Interrupted runs resume when rerun.
    Needs diffusers: pip install -e ".[vae]". Nothing is downloaded.

    \b
    Examples:
      dimsum prepare-latents data/imagenet/train --vae models/sd-vae-ft-ema --out data/imagenet256_latents
      dimsum prepare-latents data/celeba --vae models/sd-vae-ft-ema --out data/celeba_lat --labels none
    """
    prepare_latents(image_dir, vae_dir, out, resolution=resolution, batch_size=batch_size, labels=labels,
                    flip=flip, seed=seed, on_bad_image=on_bad_image, device=device)
