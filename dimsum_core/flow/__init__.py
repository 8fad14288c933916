"""Flow matching: interpolation paths between noise (t = 0) and data (t = 1) and the objective."""

from dimsum_core.flow.objective import VelocityMatching
from dimsum_core.flow.paths import PATHS, GVPPath, InterpolationPath, LinearPath

__all__ = ["PATHS", "GVPPath", "InterpolationPath", "LinearPath", "VelocityMatching"]
