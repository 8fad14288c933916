"""Built-in datasets: image folders, precomputed latents and procedural shapes."""

from __future__ import annotations

from dimsum_core.plugin import hookimpl
from dimsum_plugins.datasets.image_folder import ImageFolderDataset
from dimsum_plugins.datasets.latents import LatentDataset
from dimsum_plugins.datasets.procedural import ProceduralShapes
from dimsum_plugins.datasets.scenes import ProceduralScenes


@hookimpl
def dimsum_add_datasets(registry):
    registry.add("image-folder", ImageFolderDataset)
    registry.add("latents", LatentDataset)
    registry.add("procedural", ProceduralShapes)
    registry.add("procedural-scenes", ProceduralScenes)
