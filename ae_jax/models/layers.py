"""Convolution layers and helpers shared by the conv models (NHWC images, HWIO kernels).

`Conv` and `ConvTranspose` hold the same parameters as flax's `nn.Conv`/`nn.ConvTranspose`
('kernel' k×k×C×O, 'bias' O) and compute the same forward pass. Their backward pass is
chosen by `loop_safe`:

- `loop_safe=True` (default): a hand-written backward pass that stays fast inside lax loops
  (the training step runs in `lax.fori_loop`): the input gradient as a forward-form
  convolution with the flipped, transposed kernel, the kernel gradient as one im2col matmul.
- `loop_safe=False`: XLA's own backward pass, for steps compiled without a loop around them
  (configs/rotation.py pairs it with `steps_per_call=1`).

Why two: XLA:CPU's autodiff convs are slow inside loop bodies and fast outside them;
experiments/README.md#training-speed-ae_jax-vs-pytorch-bench_trainpy. Either way the
convolutions XLA:CPU runs badly even outside loops (transposed convs and other expanding
ones, strided ones) take `fastconv`'s matmul forms.

`ConvTranspose` follows PyTorch's `ConvTranspose2d(kernel, stride, padding, output_padding)`:
output size (n − 1)·stride + kernel − 2·padding + output_padding.

    y = Conv(32, 3, strides=2, padding=1).apply(variables, x_BHWC)
    y = ConvTranspose(16, 3, stride=2, padding=1, output_padding=1).apply(variables, y)
    x = depth_to_space(y_BHW4C)                # pixel shuffle ×2
"""
import functools
import math
from typing import Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ae_jax.models import fastconv

DIMENSIONS = fastconv.DIMENSIONS  # (input, kernel, output) layouts: NHWC, HWIO, NHWC


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x, w, strides, padding, lhs_dilation=(1, 1)):
  """`lax.conv_general_dilated` (NHWC, HWIO, explicit padding pairs) with a loop-friendly VJP."""
  return lax.conv_general_dilated(x, w, strides, padding, lhs_dilation=lhs_dilation,
                                  dimension_numbers=fastconv.DIMENSIONS)


def _conv2d_fwd(x, w, strides, padding, lhs_dilation):
  return conv2d(x, w, strides, padding, lhs_dilation), (x, w)


def _conv2d_bwd(strides, padding, lhs_dilation, residuals, dy):
  x, w = residuals
  kh, kw = w.shape[:2]
  # The forward pass is a VALID strided convolution of the dilated, padded input xd.
  config = [(0, 0, 0), *((lo, hi, d - 1) for (lo, hi), d in zip(padding, lhs_dilation)), (0, 0, 0)]
  xd, pad_vjp = jax.vjp(lambda a: lax.pad(a, jnp.zeros((), a.dtype), config), x)
  patches, _ = fastconv.patches(xd, (kh, kw), strides, ((0, 0), (0, 0)))
  dw = (patches.T @ dy.reshape(-1, dy.shape[-1])).reshape(w.shape)
  pads = [(k - 1, m - 1 - (o - 1) * s)
          for k, m, o, s in zip((kh, kw), xd.shape[1:3], dy.shape[1:3], strides)]
  dxd = lax.conv_general_dilated(dy, jnp.flip(w, (0, 1)).swapaxes(2, 3), (1, 1), pads,
                                 lhs_dilation=strides, dimension_numbers=fastconv.DIMENSIONS)
  return pad_vjp(dxd)[0], dw.astype(w.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def _pairs(value, n=2):
  """An int as an n-tuple of itself; a sequence as a tuple."""
  return (value,) * n if isinstance(value, int) else tuple(value)


def _xla_conv2d(x, w, strides, padding, lhs_dilation=(1, 1)):
  """`lax.conv_general_dilated` (NHWC, HWIO) with XLA's own autodiff backward pass."""
  return lax.conv_general_dilated(x, w, strides, padding, lhs_dilation=lhs_dilation,
                                  dimension_numbers=fastconv.DIMENSIONS)


# Both send expanding convolutions (transposed convs, outputs smaller than the kernel) and
# strided ones to fastconv's matmul forms; they differ in the backward pass of the rest.
_CONV2D_CUSTOM_VJP = fastconv.route(conv2d)  # hand-written backward pass (loop_safe=True)
_CONV2D_XLA_VJP = fastconv.route(_xla_conv2d)  # XLA's autodiff backward pass (loop_safe=False)


def _convolve(x, kernel, strides, padding, lhs_dilation, loop_safe):
  """The routed convolution, with the hand-written backward pass when `loop_safe`."""
  if loop_safe:
    return _CONV2D_CUSTOM_VJP(x, kernel, strides, padding, lhs_dilation)
  return _CONV2D_XLA_VJP(x, kernel, strides, padding, lhs_dilation)


class Conv(nn.Module):
  """2-D convolution like `nn.Conv`: padding 'SAME', 'VALID', an int or ((lo, hi), (lo, hi))."""

  features: int
  kernel_size: Union[int, Sequence[int]]
  strides: Union[int, Sequence[int]] = 1
  padding: Union[str, int, Sequence[Sequence[int]]] = "SAME"
  use_bias: bool = True
  # True: hand-written backward pass that stays fast inside lax loops; False: XLA's own.
  loop_safe: bool = True

  @nn.compact
  def __call__(self, x):
    kernel_hw, strides = _pairs(self.kernel_size), _pairs(self.strides)
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*kernel_hw, x.shape[-1], self.features))
    if isinstance(self.padding, str):
      padding = tuple(lax.padtype_to_pads(x.shape[1:3], kernel_hw, strides, self.padding))
    elif isinstance(self.padding, int):
      padding = ((self.padding, self.padding),) * 2
    else:
      padding = tuple(tuple(p) for p in self.padding)
    y = _convolve(x, kernel.astype(x.dtype), strides, padding, (1, 1), self.loop_safe)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


class ConvTranspose(nn.Module):
  """PyTorch-style transposed convolution (same parameter shapes as `nn.ConvTranspose`)."""

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  output_padding: int = 0
  # True: hand-written backward pass that stays fast inside lax loops; False: XLA's own.
  loop_safe: bool = True

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features))
    lo = k - 1 - self.padding
    pads = ((lo, lo + self.output_padding),) * 2
    y = _convolve(x, kernel.astype(x.dtype), (1, 1), pads, (self.stride,) * 2, self.loop_safe)
    return y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)


def depth_to_space(x_BHWC, block: int = 2):
  """Pixel shuffle: B×H×W×(r²·C) → B×rH×rW×C (PyTorch PixelShuffle channel order)."""
  b, h, w, c = x_BHWC.shape
  x = x_BHWC.reshape(b, h, w, c // (block * block), block, block)
  x = x.transpose(0, 1, 4, 2, 5, 3)  # B, H, r, W, r, C
  return x.reshape(b, h * block, w * block, c // (block * block))


def space_to_depth(x_BHWC, block: int = 2):
  """Inverse of `depth_to_space`."""
  b, h, w, c = x_BHWC.shape
  x = x_BHWC.reshape(b, h // block, block, w // block, block, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)  # B, H/r, W/r, C, r, r
  return x.reshape(b, h // block, w // block, c * block * block)


class GroupNorm(nn.Module):
  """GroupNorm from per-channel spatial means of x and x² ('scale'/'bias' as `nn.GroupNorm`,
  same output up to rounding); cheaper on XLA:CPU than flax's."""

  num_groups: int
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x):
    b, c = x.shape[0], x.shape[-1]
    g = math.gcd(self.num_groups, c)
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    axes = tuple(range(1, x.ndim - 1))
    mean = jnp.mean(x, axis=axes).reshape(b, g, -1).mean(-1)
    mean2 = jnp.mean(x * x, axis=axes).reshape(b, g, -1).mean(-1)
    inv = lax.rsqrt(jnp.maximum(mean2 - mean * mean, 0.0) + self.epsilon)
    inv = jnp.repeat(inv, c // g, axis=1) * scale
    shift = bias - jnp.repeat(mean, c // g, axis=1) * inv
    expand = (b,) + (1,) * len(axes) + (c,)
    return x * inv.reshape(expand) + shift.reshape(expand)


def pad_to(x_BHWC, size_hw, value=0.0):
  """Pads H and W symmetrically (the odd pixel after) up to `size_hw` with `value`."""
  (h, w), (th, tw) = x_BHWC.shape[1:3], size_hw
  if (h, w) == (th, tw):
    return x_BHWC
  pads = ((0, 0), ((th - h) // 2, th - h - (th - h) // 2),
          ((tw - w) // 2, tw - w - (tw - w) // 2), (0, 0))
  return jnp.pad(x_BHWC, pads, constant_values=value)


def crop_to(x_BHWC, size_hw):
  """Inverse of `pad_to`: the central `size_hw` window."""
  (h, w), (th, tw) = x_BHWC.shape[1:3], size_hw
  top, left = (h - th) // 2, (w - tw) // 2
  return x_BHWC[:, top:top + th, left:left + tw, :]
