"""``image-folder``: a folder of images (optionally one sub-folder per class) as pixels in [-1, 1]."""

from __future__ import annotations

import warnings

import torch

from dimsum_core.data.image_files import BadImagePolicy, LabelMode, find_images, load_image
from dimsum_core.errors import DataError
from dimsum_core.interfaces.dataset import ImageDataset


class ImageFolderDataset(ImageDataset):
    """Images from a folder, ADM center-cropped to `resolution`, labels from sub-folders.

    With ``hflip`` the dataset has 2 x N items: item i is image i % N, mirrored when i >= N (the
    official latent layout). A shuffled sampler then flips at random, and which items a step sees
    depends only on the sampler, so training resumes bitwise whatever the number of workers.
    """

    channels = 3
    is_latent = False

    def __init__(self, root: str, resolution: int = 256, hflip: bool = True, labels: LabelMode = "auto",
                 on_bad_image: BadImagePolicy = "skip"):
        found = find_images(root, labels, on_bad_image)
        self.root = found.root
        self.files = found.files
        self.labels = found.labels
        self.classes = found.classes
        self.skipped = found.skipped
        self.resolution = resolution
        self.num_classes = len(found.classes)
        self.hflip = hflip
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.files) * (2 if self.hflip else 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self.files)
        i = index % n
        for attempt in range(n):
            path = self.files[(i + attempt) % n]
            try:
                x = load_image(path, self.resolution)
            except DataError:
                # headers parsed at start-up but the pixels did not decode (a truncated file)
                if self.on_bad_image == "error":
                    raise
                warnings.warn(f"{path}: unreadable image, using the next one instead", stacklevel=2)
                continue
            if index >= n:
                x = x.flip(-1)
            return x, self.labels[(i + attempt) % n]
        raise DataError(f"{self.root}: no image could be decoded")
