"""Token layouts of wavelet coefficients: how the DiM wavelet branch turns a token grid into a
sequence of wavelet tokens of the same count and width, and back.

Both layouts start from the packet coefficients of the (N, C, G, G) token image: 4**L subbands of
size S×S, S = G / 2**L (see :mod:`dimsum_core.interfaces.wavelet`).

* ``interleaved`` (official DiMSUM code): the coefficient stack is rearranged with
  ``(c p1 p2) h w -> (h p1 w p2) c`` (p = 2**L), so the token at grid position (p·i + p1, p·j + p2)
  holds all subbands at coarse location (i, j), each with the channel slice ≡ p·p1 + p2 (mod p²).
  The p×p block of tokens at (i, j) holds every coefficient of that location.
* ``pyramid`` (what the paper's figure describes): the subbands are tiled as a p×p mosaic of S×S
  tiles, band b at tile (b // p, b % p); each token holds all C channels of one subband at one
  location. A window scan with window S then visits the subbands one by one, LL first.
"""

from __future__ import annotations

from typing import Literal

import torch

from dimsum_core.interfaces.wavelet import WaveletTransform

Layout = Literal["interleaved", "pyramid"]


def tokens_to_wavelet(x: torch.Tensor, grid: int, transform: WaveletTransform, layout: Layout,
                      scale: float) -> torch.Tensor:
    """(N, T, C) tokens on a grid×grid raster -> (N, T, C) wavelet tokens (float32)."""
    n, t, c = x.shape
    p = 2**transform.levels
    s = grid // p
    image = x.transpose(1, 2).reshape(n, c, grid, grid)
    coeffs = transform(image) * scale  # (N, p²·C, S, S), band-major
    if layout == "interleaved":
        # channel index k = band·C + ch is split as (c' p1 p2) with p1, p2 innermost
        out = coeffs.reshape(n, c, p, p, s, s).permute(0, 4, 2, 5, 3, 1)  # (N, S, p1, S, p2, c')
    else:
        out = coeffs.reshape(n, p, p, c, s, s).permute(0, 1, 4, 2, 5, 3)  # (N, by, S, bx, S, C)
    return out.reshape(n, t, c)


def wavelet_to_tokens(w: torch.Tensor, grid: int, transform: WaveletTransform, layout: Layout,
                      scale: float) -> torch.Tensor:
    """Inverse of :func:`tokens_to_wavelet`."""
    n, t, c = w.shape
    p = 2**transform.levels
    s = grid // p
    if layout == "interleaved":
        coeffs = w.reshape(n, s, p, s, p, c).permute(0, 5, 2, 4, 1, 3)  # (N, c', p1, p2, S, S)
    else:
        coeffs = w.reshape(n, p, s, p, s, c).permute(0, 1, 3, 5, 2, 4)  # (N, by, bx, C, S, S)
    image = transform.inverse(coeffs.reshape(n, p * p * c, s, s) / scale)
    return image.reshape(n, c, t).transpose(1, 2)
