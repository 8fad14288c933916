"""Building blocks shared by the networks (embedders, norms, attention, MLPs)."""
