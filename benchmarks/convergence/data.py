"""The study's image splits, rendered once and kept as uint8 tensors (on disk and on the device).

Images are stored as uint8, as an image dataset would hold them (the official rounding
``clamp(127.5 x + 128)``); training and every metric decode them with ``u / 127.5 - 1``.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimsum_core.config.nodes import build, plain, split_node
from dimsum_core.errors import DataError
from dimsum_core.sampling.generate import to_uint8

CHUNK = 1000


@dataclass
class Split:
    #: (N, 3, R, R) uint8
    images: torch.Tensor
    #: (N,) int64
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


def decode(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1]."""
    return images.float() / 127.5 - 1


def split_node_for(data_node: Any, split: str, size: int) -> dict[str, Any]:
    """The dataset node of ``split`` with ``size`` items (the other keys as in ``data_node``)."""
    name, kwargs = split_node(plain(data_node), "data")
    return {"name": name, **kwargs, "split": split, "size": size}


def _render_chunk(dataset: Any, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(dataset, "render"):  # vectorised datasets (procedural-scenes) draw a chunk at once
        images, labels = dataset.render(np.arange(start, stop))
        return to_uint8(torch.from_numpy(images)).numpy(), labels
    items = [dataset[i] for i in range(start, stop)]
    return (to_uint8(torch.stack([x for x, _ in items])).numpy(), np.array([y for _, y in items], np.int64))


def load_split(node: dict[str, Any], cache_dir: Path | None = None, workers: int = 4) -> Split:
    """Render every item of the dataset ``node`` (cached in ``cache_dir`` by the node's content)."""
    key = hashlib.sha256(json.dumps(node, sort_keys=True).encode()).hexdigest()[:16]
    cache = cache_dir / f"{node.get('split', 'data')}-{key}.npz" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        with np.load(cache) as saved:
            return Split(torch.from_numpy(saved["images"]), torch.from_numpy(saved["labels"]))
    dataset = build("dataset", node)
    if dataset.channels != 3 or dataset.is_latent:
        raise DataError(f"the study needs 3-channel pixel data, but '{node['name']}' gives "
                        f"{dataset.channels} channels{' of latents' if dataset.is_latent else ''}")
    bounds = [(s, min(s + CHUNK, len(dataset))) for s in range(0, len(dataset), CHUNK)]
    # numpy releases the GIL in its array kernels, so threads render chunks in parallel
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda b: _render_chunk(dataset, *b), bounds))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, images=images, labels=labels)
        tmp.replace(cache)
    return Split(torch.from_numpy(images), torch.from_numpy(labels))
