"""Built-in wavelet transforms: the official 2-level Haar packet transform and a pytorch-wavelets
backed one for other families.

Both follow :mod:`dimsum_core.interfaces.wavelet`: a ``levels``-level *packet* decomposition,
coefficients stacked band-major with the level-0 band outermost, float32 even under autocast.
"""

from __future__ import annotations

import torch

from dimsum_core.config.spec import PositiveInt
from dimsum_core.errors import DimsumError
from dimsum_core.interfaces.wavelet import WaveletTransform
from dimsum_core.nn.precision import autocast_off


def _float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_divisible(x: torch.Tensor, levels: int) -> None:
    side = 2**levels
    if x.shape[-1] % side or x.shape[-2] % side:
        raise DimsumError(f"a {levels}-level wavelet transform needs height and width divisible by {side}, "
                          f"got {tuple(x.shape[-2:])}; change the image size or the patch size")


def _along(sign: torch.Tensor, ndim: int, dim: int) -> torch.Tensor:
    """The 2-vector ``sign`` shaped to broadcast along ``dim`` of an ``ndim``-dimensional tensor."""
    return sign.view([2 if d == dim else 1 for d in range(ndim)])


class _Butterfly(torch.autograd.Function):
    """Sum and difference of the two halves of ``x`` along ``src`` (size 2), written along ``dst`` of
    the output: ``first + second · (+1, -1)``, one kernel (multiplying by ±1 is exact, so bitwise the
    separate sum and difference). The map is its own transpose, so the backward is the same butterfly
    on the gradient, from ``dst`` back to ``src``: one kernel again, and no zero-filled slice gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sign: torch.Tensor, src: int, dst: int) -> torch.Tensor:  # noqa: ANN001
        ctx.src, ctx.dst = src, dst
        ctx.save_for_backward(sign)
        first, second = x.unbind(src)
        return torch.addcmul(first.unsqueeze(dst), second.unsqueeze(dst), _along(sign, x.dim(), dst))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # noqa: ANN001
        (sign,) = ctx.saved_tensors
        first, second = grad.unbind(ctx.dst)
        return (torch.addcmul(first.unsqueeze(ctx.src), second.unsqueeze(ctx.src), _along(sign, grad.dim(), ctx.src)),
                None, None, None)


class HaarPacket(WaveletTransform):
    """Orthonormal Haar packet transform (the official DiMSUM wavelet), as two butterflies per level.

    One level maps each 2×2 block [[a, b], [c, d]] to
    LL = (a+b+c+d)/2, LH = (a+b-c-d)/2 (top - bottom), HL = (a-b+c-d)/2 (left - right),
    HH = (a-b-c+d)/2 — the same coefficients as the official depthwise stride-2 convolutions,
    without launching a convolution (the official inverse was 89% of the network's GPU time).
    Each butterfly is one kernel that writes its outputs where the next step wants them, and the
    halvings are one multiplication by 2**-levels at the end (exact, as a power of two): 5 kernels a
    transform instead of 20-30 for slices, sums and stacks, with bitwise the same coefficients.
    """

    def __init__(self, *, levels: PositiveInt = 2):
        super().__init__()
        if levels < 1:
            raise ValueError("levels must be >= 1")
        self.levels = levels
        # on the module's device from the start: no host-to-device copy per call (CUDA-graph capture
        # forbids one); not persistent, so state dicts stay the official ones
        self.register_buffer("sign", torch.tensor([1.0, -1.0]), persistent=False)

    def _butterfly(self, x: torch.Tensor, src: int, dst: int) -> torch.Tensor:
        return _Butterfly.apply(x, self.sign.to(x.device, x.dtype), src, dst)  # no-op once moved with .to()

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(N, B, C, H, W) -> (N, B*4, C, H/2, W/2), unscaled: every band splits into its 4 children."""
        n, b, c, h, w = x.shape
        blocks = x.reshape(n, b, c, h // 2, 2, w // 2, 2)  # (N, B, C, h, row, w, col)
        cols = self._butterfly(blocks, src=6, dst=2)  # left ± right: (N, B, j, C, h, row, w)
        bands = self._butterfly(cols, src=5, dst=3)  # top ± bottom: (N, B, j, i, C, h, w), band 2j + i
        return bands.reshape(n, b * 4, c, h // 2, w // 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_split`, unscaled."""
        n, b4, c, h, w = x.shape
        q = x.reshape(n, b4 // 4, 2, 2, c, h, w)  # (N, B, j, i, C, h, w)
        rows = self._butterfly(q, src=3, dst=5)  # (N, B, j, C, h, row, w)
        pixels = self._butterfly(rows, src=2, dst=6)  # (N, B, C, h, row, w, col)
        return pixels.reshape(n, b4 // 4, c, h * 2, w * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_divisible(x, self.levels)
        with autocast_off(x.device.type):
            x = _float32(x)
            n, c, h, w = x.shape
            bands = x.unsqueeze(1)
            for _ in range(self.levels):
                bands = self._split(bands)
            return bands.reshape(n, -1, h >> self.levels, w >> self.levels) * 2.0**-self.levels

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        with autocast_off(coeffs.device.type):
            coeffs = _float32(coeffs)
            n, k, h, w = coeffs.shape
            bands = coeffs.reshape(n, 4**self.levels, k // 4**self.levels, h, w)
            for _ in range(self.levels):
                bands = self._merge(bands)
            return bands.reshape(n, -1, h << self.levels, w << self.levels) * 2.0**-self.levels


class PyWaveletsPacket(WaveletTransform):
    """Packet transform for any PyWavelets family through pytorch-wavelets (``wave`` e.g. 'db2', 'sym4').

    Uses ``mode='periodization'`` so every level halves the size exactly and reconstructs perfectly.
    """

    def __init__(self, *, wave: str = "haar", levels: PositiveInt = 2):
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
