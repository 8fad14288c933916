"""The parts the networks of :mod:`dimsum_core.network` are made of: layers and embeddings, and the built-in
swappable components (scan orders, wavelet transforms, branch fusions, the Mamba mixer)."""
