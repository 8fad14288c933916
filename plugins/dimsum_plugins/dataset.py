"""Built-in datasets: image folders, precomputed latents and procedural shapes and scenes."""

from __future__ import annotations

from dimsum_core.data.image_folder import ImageFolderDataset
from dimsum_core.data.latents import LatentDataset
from dimsum_core.data.procedural import ProceduralShapes
from dimsum_core.data.scenes import ProceduralScenes
from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry


@hookimpl
def dimsum_add_datasets(registry: Registry) -> None:
    for name, dataset in {"image-folder": ImageFolderDataset, "latents": LatentDataset,
                          "procedural": ProceduralShapes, "procedural-scenes": ProceduralScenes}.items():
        registry.add(name, dataset)
