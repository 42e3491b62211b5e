"""2-D convolutions for XLA:CPU as matmuls: expanding ones from their small side, strided
and shrinking ones by im2col.

XLA:CPU runs a convolution whose input is smaller than its kernel's reach — a transposed
conv (4×4 → 8×8 with a 5×5 kernel), or the input gradient of a VALID conv — on a slow
path (it swaps the operands), and a strided transposed conv multiplies the zeros it
interleaves (measurements: experiments/README.md#notes-moved-from-code-comments).
Here such a convolution is computed from its small side:

    Z = x @ W      one matmul, (B·H·W, Cin) × (Cin, KH·KW·Cout), no zeros multiplied
    y = Σ_taps Z[..., tap, :]      each tap added in place at its (strided) offset

and its gradients are strided slices of dy and two matmuls. `conv` computes an ordinary
convolution as one im2col matmul, keeps the patches for its kernel gradient, and scatters
its input gradient as above.

    from ae_jax.models import fastconv
    y = fastconv.transpose_conv(x_BHWC, w_HWIO, strides=(2, 2), padding=((1, 2), (1, 2)))
    # == lax.conv_general_dilated(x, w, (1, 1), padding, lhs_dilation=(2, 2), NHWC/HWIO/NHWC)
    y = fastconv.conv(x_BHWC, w_HWIO, (2, 2), ((1, 1), (1, 1)))
    # == lax.conv_general_dilated(x, w, strides, padding, NHWC/HWIO/NHWC)
    conv2d = fastconv.route(conv2d)   # a model's own conv2d, with only these cases rerouted

Layouts: NHWC inputs, HWIO kernels, explicit (lo, hi) padding pairs, no groups or kernel
dilation.
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _scatter_taps(z_BHWKKC, stride_hw, offset_hw, sign, out_hw):
  """Σ over taps (p, q) of z[:, :, :, p, q, :], interleaved by the stride and shifted so
  that input i lands on output s·i + offset + sign·tap; cropped/zero-filled to `out_hw`.

  Accumulated in place, one tap at a time, into a buffer viewed as (B, H/s, s, W/s, s, C):
  a strided tap is then a contiguous block at one phase, so each tap is one in-place
  update of its own size (a sum of zero-padded taps would make XLA:CPU write every tap out
  at full output size; experiments/README.md#training-speed-ae_jax-vs-pytorch-bench_trainpy)."""
  b, h, w, kh, kw, c = z_BHWKKC.shape
  starts = [[off + sign * t for t in range(k)] for off, k in zip(offset_hw, (kh, kw))]
  margin = [-(-max(0, -min(st)) // s) * s for st, s in zip(starts, stride_hw)]
  blocks = [-(-(m + max(o, max(st) + s * (n - 1) + 1)) // s)
            for m, o, st, s, n in zip(margin, out_hw, starts, stride_hw, (h, w))]
  (sh, sw), (mh, mw) = stride_hw, margin
  y = jnp.zeros((b, blocks[0], sh, blocks[1], sw, c), z_BHWKKC.dtype)
  for p in range(kh):
    for q in range(kw):
      rh, rw = starts[0][p] + mh, starts[1][q] + mw
      at = (0, rh // sh, rh % sh, rw // sw, rw % sw, 0)
      tap = z_BHWKKC[:, :, :, p, q, :].reshape(b, h, 1, w, 1, c)
      y = lax.dynamic_update_slice(y, lax.dynamic_slice(y, at, tap.shape) + tap, at)
  y = y.reshape(b, blocks[0] * sh, blocks[1] * sw, c)
  return y[:, mh:mh + out_hw[0], mw:mw + out_hw[1], :]


def _gather_taps(y_BOOC, stride_hw, offset_hw, sign, in_hw, kernel_hw):
  """The adjoint of `_scatter_taps`: (B, H, W, KH, KW, C) with [i, tap] = y[s·i + offset +
  sign·tap] (zero outside y), one concatenate of strided slices."""
  b, c = y_BOOC.shape[0], y_BOOC.shape[3]
  firsts = [[off + sign * t for t in range(k)] for off, k in zip(offset_hw, kernel_hw)]
  pads = [(max(0, -min(f)), max(0, max(f) + s * (n - 1) + 1 - o))
          for f, s, n, o in zip(firsts, stride_hw, in_hw, y_BOOC.shape[1:3])]
  yp = jnp.pad(y_BOOC, ((0, 0), *pads, (0, 0)))
  (sh, sw), (h, w) = stride_hw, in_hw
  cols = []
  for fi in firsts[0]:
    for fj in firsts[1]:
      i0, j0 = fi + pads[0][0], fj + pads[1][0]
      cols.append(lax.slice(yp, (0, i0, j0, 0), (b, i0 + sh * (h - 1) + 1, j0 + sw * (w - 1) + 1, c),
                            (1, sh, sw, 1)))
  return jnp.concatenate(cols, axis=-1).reshape(b, h, w, *kernel_hw, c)


# Contractions with K ≤ FMA_MAX_K run as K multiply-adds that XLA fuses into one loop over
# the output (the one-channel layers): faster than a matmul call up to here, slower at K = 16;
# experiments/README.md#training-speed-ae_jax-vs-pytorch-bench_trainpy.
FMA_MAX_K = 9


def _matmul(a_MK, b_KN):
  """a @ b, as K fused multiply-adds (accumulated in float32) when K ≤ FMA_MAX_K."""
  if a_MK.shape[1] > FMA_MAX_K:
    return a_MK @ b_KN
  dtype = jnp.result_type(a_MK, b_KN)
  a, b = a_MK.astype(jnp.float32), b_KN.astype(jnp.float32)
  return sum(a[:, k:k + 1] * b[k] for k in range(a.shape[1])).astype(dtype)


def _taps_matmul(x_BHWC, w_CKKD):
  """(B,H,W,C) @ (C,KH,KW,D) → (B,H,W,KH,KW,D) as one 2-D matmul."""
  b, h, w, c = x_BHWC.shape
  _, kh, kw, d = w_CKKD.shape
  z = _matmul(x_BHWC.reshape(b * h * w, c), w_CKKD.reshape(c, kh * kw * d))
  return z.reshape(b, h, w, kh, kw, d)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def transpose_conv(x_BHWC, w_HWIO, strides, padding):
  """`lax.conv_general_dilated(x, w, (1, 1), padding, lhs_dilation=strides)`: the forward
  pass of flax's ConvTranspose (transpose_kernel=False) and of PyTorch-style ones. Its VJP:
  dZ = the taps gathered from dy (strided slices), dx = dZ @ Wᵀ, dW = xᵀ @ dZ."""
  kh, kw = w_HWIO.shape[:2]
  out_hw = tuple(s * (n - 1) + 1 + lo + hi - k + 1
                 for s, n, (lo, hi), k in zip(strides, x_BHWC.shape[1:3], padding, (kh, kw)))
  z = _taps_matmul(x_BHWC, w_HWIO.transpose(2, 0, 1, 3))
  # Output o reads dilated-padded input at o + k, i.e. input i with o = s·i + lo − k.
  return _scatter_taps(z, strides, [lo for lo, _ in padding], -1, out_hw)


def _transpose_conv_fwd(x, w, strides, padding):
  return transpose_conv(x, w, strides, padding), (x, w)


def _transpose_conv_bwd(strides, padding, residuals, dy):
  x, w = residuals
  kh, kw, ci, co = w.shape
  dz = _gather_taps(dy, strides, [lo for lo, _ in padding], -1, x.shape[1:3], (kh, kw))
  dz = dz.reshape(-1, kh * kw * co)
  w_c = w.transpose(2, 0, 1, 3).reshape(ci, kh * kw * co)
  dx = _matmul(dz, w_c.T).reshape(x.shape)
  dw = (x.reshape(-1, ci).T @ dz).reshape(ci, kh, kw, co).transpose(1, 2, 0, 3)
  return dx.astype(x.dtype), dw.astype(w.dtype)


transpose_conv.defvjp(_transpose_conv_fwd, _transpose_conv_bwd)


def conv_input_grad(dy_BHWC, w_HWIO, strides, padding, in_hw):
  """The VJP of `lax.conv_general_dilated(x, w, strides, padding)` with respect to x."""
  z = _taps_matmul(dy_BHWC, w_HWIO.transpose(3, 0, 1, 2))
  # Output o read input u = s·o + k − lo.
  return _scatter_taps(z, strides, [-lo for lo, _ in padding], +1, in_hw)


def patches(x_BHWC, kernel_hw, strides, padding):
  """im2col: (B·Ho·Wo, KH·KW·Cin) rows of the padded input, columns in HWIO order."""
  (kh, kw), (sh, sw) = kernel_hw, strides
  cfg = [(0, 0, 0), *((lo, hi, 0) for lo, hi in padding), (0, 0, 0)]
  xp = lax.pad(x_BHWC, jnp.zeros((), x_BHWC.dtype), cfg)
  b, c = xp.shape[0], xp.shape[3]
  oh, ow = ((n - k) // s + 1 for n, k, s in zip(xp.shape[1:3], kernel_hw, strides))
  cols = [lax.slice(xp, (0, i, j, 0), (b, i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1, c),
                    (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]
  return jnp.concatenate(cols, axis=-1).reshape(b * oh * ow, kh * kw * c), (b, oh, ow)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x_BHWC, w_HWIO, strides, padding):
  """`lax.conv_general_dilated(x, w, strides, padding)` (NHWC/HWIO) as one im2col matmul;
  VJP: dx scattered as in `transpose_conv`, dw = patchesᵀ @ dy."""
  return _conv_fwd(x_BHWC, w_HWIO, strides, padding)[0]


def _conv_fwd(x, w, strides, padding):
  cols, (b, oh, ow) = patches(x, w.shape[:2], strides, padding)
  y = _matmul(cols, w.reshape(cols.shape[1], w.shape[3])).reshape(b, oh, ow, w.shape[3])
  return y, (cols, w, x)  # x only for its shape and dtype (no copy: it is the input)


def _conv_bwd(strides, padding, residuals, dy):
  cols, w, x = residuals
  dx = conv_input_grad(dy, w, strides, padding, x.shape[1:3])
  dw = (cols.T @ dy.reshape(cols.shape[0], -1)).reshape(w.shape)
  return dx.astype(x.dtype), dw.astype(w.dtype)


conv.defvjp(_conv_fwd, _conv_bwd)


def _out_size(n, k, s, pad):
  """Output length of a VALID window of k at stride s over n padded by pad = (lo, hi)."""
  return (n + pad[0] + pad[1] - k) // s + 1


def route(fallback):
  """Wraps a `conv2d(x, w, strides, padding, lhs_dilation=(1, 1))` (NHWC/HWIO, explicit
  padding pairs) so that the convolutions XLA:CPU runs badly take the matmul forms here:

  - a transposed / expanding forward (lhs_dilation > 1, or input smaller than the kernel,
    window stride 1) → `transpose_conv`;
  - a conv whose output is smaller than its kernel (its input gradient would expand), or a
    strided one → `conv` (im2col matmul: XLA:CPU's own strided conv is slow per flop with
    one input channel, and its lhs-dilated input gradient multiplies zeros);
  - everything else (stride-1 convs) → `fallback`, unchanged.

  Measurements behind these choices:
  experiments/README.md#training-speed-ae_jax-vs-pytorch-bench_trainpy.

      conv2d = fastconv.route(conv2d)     # in a layers module, after defining conv2d
  """

  def conv2d(x, w, strides, padding, lhs_dilation=(1, 1)):
    strides, dilation = tuple(strides), tuple(lhs_dilation)
    padding = tuple(tuple(int(v) for v in p) for p in padding)
    kernel_hw = w.shape[:2]
    if strides == (1, 1) and (any(d > 1 for d in dilation)
                              or any(n < k for n, k in zip(x.shape[1:3], kernel_hw))):
      return transpose_conv(x, w, dilation, padding)
    out_hw = [_out_size(n, k, s, p) for n, k, s, p in zip(x.shape[1:3], kernel_hw, strides, padding)]
    if dilation == (1, 1) and (strides != (1, 1) or any(o < k for o, k in zip(out_hw, kernel_hw))):
      return conv(x, w, strides, padding)
    return fallback(x, w, strides, padding, lhs_dilation)

  return conv2d
