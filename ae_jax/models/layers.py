"""Layers and helpers shared by the conv models (NHWC images, HWIO kernels), and the XLA:CPU
forms of their convolutions and GroupNorm that ae_jax/backend.py picks on a CPU.

The models use flax's own `nn.Conv` (a PyTorch-style transposed conv is `conv_transpose`:
an `nn.Conv` with `input_dilation`) and `nn.GroupNorm`. On a CPU, `ae_jax.backend` hands
`nn.Conv` one of these as its `conv_general_dilated`:

- `cpu_conv_loop_safe`: a hand-written backward pass that stays fast inside lax loops
  (the training step runs in `lax.fori_loop`): the input gradient as a forward-form
  convolution with the flipped, transposed kernel, the kernel gradient as one im2col matmul;
- `cpu_conv_xla_vjp`: XLA's own backward pass, for steps compiled without a loop around
  them (one step per call);

and either way the convolutions XLA:CPU runs badly even outside loops (transposed convs and
other expanding ones, strided ones) take `fastconv`'s matmul forms
(experiments/README.md#training-speed-ae_jax-vs-pytorch-bench_trainpy). `GroupNorm` here
computes flax's GroupNorm from per-channel means, cheaper on XLA:CPU.

`conv_transpose` follows PyTorch's `ConvTranspose2d(kernel, stride, padding, output_padding)`:
output size (n − 1)·stride + kernel − 2·padding + output_padding.

    y = nn.Conv(32, (3, 3), strides=2, padding=1).apply(variables, x_BHWC)
    y = conv_transpose(16, 3, stride=2, padding=1, output_padding=1).apply(variables, y)
    x = depth_to_space(y_BHW4C)                # pixel shuffle ×2
"""
import functools

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


def _xla_conv2d(x, w, strides, padding, lhs_dilation=(1, 1)):
  """`lax.conv_general_dilated` (NHWC, HWIO) with XLA's own autodiff backward pass."""
  return lax.conv_general_dilated(x, w, strides, padding, lhs_dilation=lhs_dilation,
                                  dimension_numbers=fastconv.DIMENSIONS)


def _for_nn_conv(conv2d):
  """`conv2d` behind `lax.conv_general_dilated`'s signature, for `nn.Conv(conv_general_dilated=…)`;
  what it does not cover (grouped or kernel-dilated convs, other layouts) goes to lax."""
  conv2d = fastconv.route(conv2d)

  def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                           rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                           **kwargs):
    nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, fastconv.DIMENSIONS)
    if (lhs.ndim != 4 or feature_group_count != 1 or tuple(rhs_dilation or (1, 1)) != (1, 1)
        or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != nhwc):
      return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                      rhs_dilation, dimension_numbers, feature_group_count,
                                      **kwargs)
    if isinstance(padding, str):
      padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    return conv2d(lhs, rhs, tuple(window_strides), padding, tuple(lhs_dilation or (1, 1)))

  return conv_general_dilated


cpu_conv_loop_safe = _for_nn_conv(conv2d)  # hand-written backward pass
cpu_conv_xla_vjp = _for_nn_conv(_xla_conv2d)  # XLA's autodiff backward pass


def conv_transpose(features, kernel_size, stride=1, padding=0, output_padding=0, **kwargs):
  """PyTorch's ConvTranspose2d as flax's `nn.Conv` over the stride-dilated input (kernel
  k×k×C×features, unflipped, as `nn.ConvTranspose` holds it)."""
  lo = kernel_size - 1 - padding
  return nn.Conv(features, (kernel_size, kernel_size), padding=((lo, lo + output_padding),) * 2,
                 input_dilation=(stride, stride), **kwargs)


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
  """`nn.GroupNorm(num_groups)` from per-channel spatial means of x and x² (same 'scale'/'bias',
  same output up to rounding); cheaper on XLA:CPU than flax's."""

  num_groups: int
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x):
    b, c = x.shape[0], x.shape[-1]
    g = self.num_groups
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
