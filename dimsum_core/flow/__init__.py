"""Flow-matching path math: interpolation paths between noise (t = 0) and data (t = 1)."""

from dimsum_core.flow.paths import PATHS, GVPPath, InterpolationPath, LinearPath

__all__ = ["PATHS", "GVPPath", "InterpolationPath", "LinearPath"]
