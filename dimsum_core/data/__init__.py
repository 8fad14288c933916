"""Data code shared by the dataset plugins, ``dimsum prepare-latents`` and training."""
