"""The `augment_on: gpu` half of `aggressive-crop`: random draws in the workers, pixels on the device.

Why split it this way: a DataLoader worker is cheap at drawing a dozen random numbers and
expensive at blurring 224 px images, and a uint8 view is a quarter of a float32 one to move
between processes. So a worker decodes, runs RandomResizedCrop (the very torchvision call of
the CPU pipeline) and draws every other parameter with the CPU pipeline's own calls in its
order (`draw_view`), under the trainer's per-(seed, epoch, image) torch seed: the same seed
gives the same crop, jitter, grayscale, blur and flip in both paths. The parameters travel as
`bytes`, which `default_collate` keeps on the host, so the device side (`augment_views`) groups
samples per operation without waiting for the device, and draws no random number at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision import transforms
from torchvision.transforms import functional as TF

from ssl_core import device_constant, to_device

# Layout of one view's parameter vector (float32).
JITTER, ORDER, FACTORS, GRAY, BLUR, SIGMA, FLIP, CROP, SOURCE = 0, 1, 5, 9, 10, 11, 12, 13, 17
N_PARAMS = 19
#: factors that leave an image unchanged (brightness, contrast, saturation, hue)
IDENTITY = (1.0, 1.0, 1.0, 0.0)
#: torchvision's (ITU-R 601-2) grey weights; PIL's "L" uses 299/587/114 per mille
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
#: PIL's GaussianBlur is this many box blurs per axis
BOX_PASSES = 3


def draw_view(img: Image.Image, crop: transforms.RandomResizedCrop, jitter_p: float,
              jitter: transforms.ColorJitter, grayscale_p: float, blur_p: float,
              blur_sigma: tuple[float, float], flip_p: float) -> tuple[Tensor, bytes]:
    """One view's uint8 crop (3, size, size) and its packed parameters.

    Draws from torch's RNG exactly what the CPU pipeline's transforms draw, in their order
    (RandomApply skips its transform's draws when it does not apply)."""
    v = np.zeros(N_PARAMS, np.float32)
    v[FACTORS:FACTORS + 4] = IDENTITY
    v[ORDER:ORDER + 4] = range(4)
    i, j, h, w = crop.get_params(img, crop.scale, crop.ratio)  # type: ignore[arg-type]
    out = TF.resized_crop(img, i, j, h, w, crop.size, crop.interpolation, antialias=crop.antialias)
    v[CROP:CROP + 4] = (i, j, h, w)
    v[SOURCE:SOURCE + 2] = img.size
    if not jitter_p < torch.rand(1):  # RandomApply
        order, *factors = jitter.get_params(jitter.brightness, jitter.contrast,  # type: ignore[arg-type]
                                            jitter.saturation, jitter.hue)
        v[JITTER] = 1.0
        v[ORDER:ORDER + 4] = order.numpy()
        v[FACTORS:FACTORS + 4] = [ident if f is None else f for f, ident in zip(factors, IDENTITY, strict=True)]
    v[GRAY] = float(torch.rand(1) < grayscale_p)  # RandomGrayscale
    if not blur_p < torch.rand(1):  # RandomApply
        v[BLUR] = 1.0
        v[SIGMA] = float(torch.empty(()).uniform_(*blur_sigma))
    v[FLIP] = float(torch.rand(1) < flip_p)  # RandomHorizontalFlip
    pixels = torch.from_numpy(np.array(out.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()
    return pixels, v.tobytes()


def unpack(packed: Sequence[bytes]) -> np.ndarray:
    """(N, N_PARAMS) parameters of a batch's views from their `bytes`."""
    return np.frombuffer(b"".join(packed), np.float32).reshape(len(packed), N_PARAMS)


# -- batched pixel operations on float (N, 3, H, W) images in [0, 1], torchvision's semantics --

def _per_sample(f: Tensor) -> Tensor:
    return f.view(-1, 1, 1, 1)


# Each op is written in as few kernels as it takes: on a GPU the batch's ops are cheap to
# run and costly to launch. None waits for the device (constants via `device_constant`,
# host data via `to_device`): a wait would drain the queue of the step before, and the
# device would then idle while this batch's kernels are launched one by one.


def _gray_weights(x: Tensor) -> Tensor:
    return device_constant(GRAY_WEIGHTS, x.device, x.dtype)


def gray(x: Tensor) -> Tensor:
    """(N, 1, H, W) grey image (a weighted sum, not a 1x1 convolution, which CUDA may run in
    TF32)."""
    return (x * _gray_weights(x).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _blend(x: Tensor, other: Tensor, f: Tensor) -> Tensor:
    """torchvision's `f * x + (1 - f) * other`, clamped, as one lerp."""
    return torch.lerp(other, x, _per_sample(f)).clamp_(0.0, 1.0)


def adjust_brightness(x: Tensor, f: Tensor) -> Tensor:
    return (x * _per_sample(f)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, f: Tensor) -> Tensor:
    # the mean of the grey image is the grey of the channel means (both are linear)
    mean = x.mean(dim=(2, 3)) @ _gray_weights(x)
    return _blend(x, _per_sample(mean), f)


def adjust_saturation(x: Tensor, f: Tensor) -> Tensor:
    return _blend(x, gray(x), f)


def pil_hue_shift(hue: np.ndarray) -> np.ndarray:
    """The hue shift PIL applies for a ColorJitter hue factor: whole 1/255 turns, truncated."""
    return np.trunc(hue * 255.0) / 255.0


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue by `shift` turns (torchvision's RGB->HSV->RGB in closed form)."""
    maxc, minc = x.amax(1, keepdim=True), x.amin(1, keepdim=True)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    h6 = torch.where(maxc == r, (g - b) / safe,
                     torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h6 = h6 + 6.0 * _per_sample(shift)
    n = device_constant((5.0, 3.0, 1.0), x.device, x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + h6, 6.0)
    return maxc - chroma * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def box_radius(sigma: float, passes: int = BOX_PASSES) -> float:
    """PIL's fractional box radius whose `passes` box blurs have variance sigma**2."""
    s2 = sigma * sigma / passes
    lo = math.floor((math.sqrt(12.0 * s2 + 1.0) - 1.0) / 2.0)
    frac = (2 * lo + 1) * (lo * (lo + 1) - 3.0 * s2) / (6.0 * (s2 - (lo + 1) ** 2))
    return lo + frac


def box_kernels(sigmas: np.ndarray) -> np.ndarray:
    """One box pass per sigma as (n, taps) weights, all centred on the same odd width: PIL's
    extended box (weight 1 inside radius l, the fraction at l + 1, normalised by 2r + 1)."""
    s2 = np.asarray(sigmas, np.float64) ** 2 / BOX_PASSES  # box_radius, for every sigma at once
    lo = np.floor((np.sqrt(12.0 * s2 + 1.0) - 1.0) / 2.0)
    radii = lo + (2 * lo + 1) * (lo * (lo + 1) - 3.0 * s2) / (6.0 * (s2 - (lo + 1) ** 2))
    lo = np.floor(radii)
    half = int(lo.max(initial=0)) + 1
    dist = np.abs(np.arange(-half, half + 1))[None, :]
    k = np.where(dist <= lo[:, None], 1.0, np.where(dist == lo[:, None] + 1, (radii - lo)[:, None], 0.0))
    return (k / (2.0 * radii[:, None] + 1.0)).astype(np.float32)


def box_blur(x: Tensor, kernels: Tensor) -> Tensor:
    """PIL's GaussianBlur: BOX_PASSES box blurs per axis, edge pixels repeated, one kernel per
    image (kernels: (n, taps))."""
    n, c, h, w = x.shape
    taps = kernels.shape[1]
    pad = taps // 2
    weight = kernels.repeat_interleave(c, dim=0).to(x.dtype)
    y = x.reshape(1, n * c, h, w)
    for _ in range(BOX_PASSES):
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="replicate"), weight.view(n * c, 1, 1, taps),
                     groups=n * c)
    for _ in range(BOX_PASSES):
        y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="replicate"), weight.view(n * c, 1, taps, 1),
                     groups=n * c)
    return y.view(n, c, h, w)


class _Plan:
    """Index lists and factors of one batch, built on the host and sent in two copies."""

    def __init__(self, p: np.ndarray, device: torch.device) -> None:
        ints: list[np.ndarray] = []
        floats: list[np.ndarray] = []
        self.spans: list[tuple[str, int, int, int, int]] = []  # (what, int lo, hi, float lo, hi)

        def add(what: str, idx: np.ndarray, values: np.ndarray | None = None) -> None:
            i0 = sum(len(a) for a in ints)
            f0 = sum(a.size for a in floats)
            ints.append(idx.astype(np.int64))
            if values is not None:
                floats.append(values.astype(np.float32).ravel())
            self.spans.append((what, i0, i0 + len(idx), f0, f0 + (0 if values is None else values.size)))

        jittered = np.flatnonzero(p[:, JITTER] > 0)
        factors = p[:, FACTORS:FACTORS + 4].copy()
        factors[:, 3] = pil_hue_shift(factors[:, 3])
        for pos in range(4):
            ops = p[jittered, ORDER + pos].astype(np.int64)
            for op in range(4):
                idx = jittered[ops == op]
                idx = idx[factors[idx, op] != IDENTITY[op]]  # a skipped op (strength 0)
                if len(idx):
                    add(f"jitter{op}", idx, factors[idx, op])
        for what, col in (("gray", GRAY), ("blur", BLUR), ("flip", FLIP)):
            idx = np.flatnonzero(p[:, col] > 0)
            if len(idx):
                add(what, idx, box_kernels(p[idx, SIGMA]) if what == "blur" else None)
        cat_i = np.concatenate(ints) if ints else np.zeros(0, np.int64)
        cat_f = np.concatenate(floats) if floats else np.zeros(0, np.float32)
        self.ints = to_device(cat_i, device)
        self.floats = to_device(cat_f, device)


def augment_views(views: Tensor, params: np.ndarray, mean: Sequence[float],
                  std: Sequence[float]) -> Tensor:
    """Finish uint8 crops (N, 3, H, W) on their device: colour jitter in each view's drawn
    order, grayscale, blur, flip, then float32 ImageNet normalisation. Output keeps the input's
    memory format (channels_last stays channels_last)."""
    channels_last = views.dim() == 4 and not views.is_contiguous() and views.is_contiguous(
        memory_format=torch.channels_last)
    x = views.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    plan = _Plan(params, x.device)
    for what, i0, i1, f0, f1 in plan.spans:
        idx = plan.ints[i0:i1]
        values = plan.floats[f0:f1]
        y = x.index_select(0, idx)
        if what.startswith("jitter"):
            y = JITTER_OPS[int(what[-1])](y, values)
        elif what == "gray":
            y = gray(y).expand_as(y)
        elif what == "blur":
            y = box_blur(y, values.view(len(idx), -1))
        else:
            y = y.flip(-1)
        x.index_copy_(0, idx, y.contiguous())
    std32 = np.asarray(std, np.float32)  # float32 maths, as Normalize's
    scale = device_constant(np.float32(1.0) / std32, x.device).view(1, 3, 1, 1)
    shift = device_constant(-np.asarray(mean, np.float32) / std32, x.device).view(1, 3, 1, 1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty_like(x, memory_format=fmt)
    return torch.addcmul(shift, x, scale, out=out)
