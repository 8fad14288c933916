"""Built-in wavelet transforms: the official 2-level Haar packet transform and a pytorch-wavelets
backed one for other families.

Both follow :mod:`dimsum_core.interfaces.wavelet`: a ``levels``-level *packet* decomposition,
coefficients stacked band-major with the level-0 band outermost, float32 even under autocast.
"""

from __future__ import annotations

import torch

from dimsum_core.errors import DimsumError
from dimsum_core.interfaces.wavelet import WaveletTransform
from dimsum_core.nn.precision import autocast_off
from dimsum_core.plugin import hookimpl


def _float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_divisible(x: torch.Tensor, levels: int) -> None:
    side = 2**levels
    if x.shape[-1] % side or x.shape[-2] % side:
        raise DimsumError(f"a {levels}-level wavelet transform needs height and width divisible by {side}, "
                          f"got {tuple(x.shape[-2:])}; change the image size or the patch size")


class HaarPacket(WaveletTransform):
    """Orthonormal Haar packet transform (the official DiMSUM wavelet), as reshapes and adds.

    One level maps each 2×2 block [[a, b], [c, d]] to
    LL = (a+b+c+d)/2, LH = (a+b-c-d)/2 (top - bottom), HL = (a-b+c-d)/2 (left - right),
    HH = (a-b-c+d)/2 — the same coefficients as the official depthwise stride-2 convolutions,
    without launching a convolution (the official inverse was 89% of the network's GPU time).
    """

    def __init__(self, *, levels: int = 2):
        super().__init__()
        if levels < 1:
            raise ValueError("levels must be >= 1")
        self.levels = levels

    @staticmethod
    def _split(x: torch.Tensor) -> torch.Tensor:
        """(N, B, C, H, W) -> (N, B*4, C, H/2, W/2): every band splits into its 4 children."""
        n, b, c, h, w = x.shape
        blocks = x.reshape(n, b, c, h // 2, 2, w // 2, 2)
        a, bb = blocks[..., 0, :, 0], blocks[..., 0, :, 1]
        cc, d = blocks[..., 1, :, 0], blocks[..., 1, :, 1]
        s_top, s_bot, d_top, d_bot = a + bb, cc + d, a - bb, cc - d
        out = torch.stack([s_top + s_bot, s_top - s_bot, d_top + d_bot, d_top - d_bot], dim=2) * 0.5
        return out.reshape(n, b * 4, c, h // 2, w // 2)

    @staticmethod
    def _merge(x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_split`."""
        n, b4, c, h, w = x.shape
        q = x.reshape(n, b4 // 4, 4, c, h, w)
        ll, lh, hl, hh = q.unbind(dim=2)
        s_top, s_bot, d_top, d_bot = ll + lh, ll - lh, hl + hh, hl - hh
        a, bb = (s_top + d_top) * 0.5, (s_top - d_top) * 0.5
        cc, d = (s_bot + d_bot) * 0.5, (s_bot - d_bot) * 0.5
        top = torch.stack([a, bb], dim=-1)  # (N, B, C, h, w, 2)
        bot = torch.stack([cc, d], dim=-1)
        out = torch.stack([top, bot], dim=-3)  # (N, B, C, h, 2, w, 2)
        return out.reshape(n, b4 // 4, c, h * 2, w * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_divisible(x, self.levels)
        with autocast_off(x.device.type):
            x = _float32(x)
            n, c, h, w = x.shape
            bands = x.unsqueeze(1)
            for _ in range(self.levels):
                bands = self._split(bands)
            return bands.reshape(n, -1, h >> self.levels, w >> self.levels)

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        with autocast_off(coeffs.device.type):
            coeffs = _float32(coeffs)
            n, k, h, w = coeffs.shape
            bands = coeffs.reshape(n, 4**self.levels, k // 4**self.levels, h, w)
            for _ in range(self.levels):
                bands = self._merge(bands)
            return bands.reshape(n, -1, h << self.levels, w << self.levels)


class PyWaveletsPacket(WaveletTransform):
    """Packet transform for any PyWavelets family through pytorch-wavelets (``wave`` e.g. 'db2', 'sym4').

    Uses ``mode='periodization'`` so every level halves the size exactly and reconstructs perfectly.
    """

    def __init__(self, *, wave: str = "haar", levels: int = 2):
        super().__init__()
        try:
            import warnings

            with warnings.catch_warnings():  # pytorch-wavelets imports the deprecated pkg_resources
                warnings.simplefilter("ignore")
                from pytorch_wavelets import DWTForward, DWTInverse
        except Exception as exc:  # missing PyWavelets / setuptools>=82 break its import
            raise DimsumError(f"wavelet 'pywavelets' needs pytorch-wavelets with PyWavelets and "
                              f"setuptools<82 ({type(exc).__name__}: {exc}); use wavelet 'haar' or reinstall "
                              f"with `pip install -e .`") from None
        try:
            self.dwt = DWTForward(J=1, wave=wave, mode="periodization")
            self.idwt = DWTInverse(wave=wave, mode="periodization")
        except ValueError as exc:
            raise DimsumError(f"wavelet family '{wave}' is unknown to PyWavelets ({exc}); "
                              f"try 'haar', 'db2' or 'sym4'") from None
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_divisible(x, self.levels)
        with autocast_off(x.device.type):
            x = _float32(x)
            n, c, h, w = x.shape
            bands = x.unsqueeze(1)  # (N, B, C, H, W)
            for _ in range(self.levels):
                b = bands.shape[1]
                low, (high,) = self.dwt(bands.flatten(1, 2))  # (N, B*C, h, w), (N, B*C, 3, h, w)
                low = low.reshape(n, b, 1, c, *low.shape[-2:])
                high = high.reshape(n, b, c, 3, *high.shape[-2:]).transpose(2, 3)
                bands = torch.cat([low, high], dim=2).flatten(1, 2)  # (N, 4B, C, h, w)
            return bands.reshape(n, -1, h >> self.levels, w >> self.levels)

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        with autocast_off(coeffs.device.type):
            coeffs = _float32(coeffs)
            n, k, h, w = coeffs.shape
            c = k // 4**self.levels
            bands = coeffs.reshape(n, 4**self.levels, c, h, w)
            for _ in range(self.levels):
                b4 = bands.shape[1]
                q = bands.reshape(n, b4 // 4, 4, c, *bands.shape[-2:])
                low = q[:, :, 0].flatten(1, 2)
                high = q[:, :, 1:].transpose(2, 3).flatten(1, 2)  # (N, B*C, 3, h, w)
                up = self.idwt((low, [high]))  # (N, B*C, 2h, 2w)
                bands = up.reshape(n, b4 // 4, c, *up.shape[-2:])
            return bands.reshape(n, -1, h << self.levels, w << self.levels)


@hookimpl
def dimsum_add_wavelets(registry) -> None:  # noqa: ANN001
    registry.add("haar", HaarPacket)
    registry.add("pywavelets", PyWaveletsPacket)
