"""fastconv: the matmul forms equal flax's nn.Conv / nn.ConvTranspose, values and gradients."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ae_jax.models import fastconv

# (input shape, features, kernel, strides, explicit padding): the conv AE's layers and
# odd cases (rectangular, uneven strides, negative padding).
TRANSPOSED = [
    ((3, 4, 4, 64), 32, (5, 5), (1, 1), ((4, 4), (4, 4))),
    ((3, 8, 8, 32), 16, (3, 3), (2, 2), ((1, 2), (1, 2))),
    ((2, 16, 16, 16), 1, (3, 3), (2, 2), ((0, 1), (0, 1))),
    ((2, 7, 5, 3), 2, (4, 2), (2, 3), ((2, 1), (0, 3))),
    ((2, 5, 5, 2), 2, (3, 3), (3, 2), ((-1, 2), (1, -1))),
]
REGULAR = [
    ((3, 8, 8, 32), 64, (5, 5), (1, 1), ((0, 0), (0, 0))),
    ((3, 30, 30, 1), 16, (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((2, 7, 9, 3), 4, (3, 2), (2, 3), ((2, 0), (1, 2))),
]


def _grads(fn, params, x):
  """fn(params, x) and its VJP with a fixed random cotangent, in one jitted call."""
  shape = jax.eval_shape(fn, params, x).shape
  ct = jnp.asarray(np.random.default_rng(1).standard_normal(shape), jnp.float32)
  return jax.jit(lambda p, x, ct: (fn(p, x), *jax.vjp(fn, p, x)[1](ct)))(params, x, ct)


def _assert_close(a, b):
  for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-4, atol=1e-4)


def _input(shape):
  return jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize("shape,features,kernel,strides,padding", TRANSPOSED)
def test_transpose_conv_matches_nn_conv_transpose(shape, features, kernel, strides, padding):
  x = _input(shape)
  ref = nn.ConvTranspose(features, kernel, strides=strides, padding=padding)
  params = ref.init(jax.random.PRNGKey(0), x)
  mine = lambda p, x: (fastconv.transpose_conv(x, p["params"]["kernel"], strides, padding)
                       + p["params"]["bias"])
  _assert_close(_grads(ref.apply, params, x), _grads(mine, params, x))


@pytest.mark.parametrize("shape,features,kernel,strides,padding", REGULAR)
def test_conv_matches_nn_conv(shape, features, kernel, strides, padding):
  x = _input(shape)
  ref = nn.Conv(features, kernel, strides=strides, padding=padding)
  params = ref.init(jax.random.PRNGKey(0), x)
  mine = lambda p, x: fastconv.conv(x, p["params"]["kernel"], strides, padding) + p["params"]["bias"]
  _assert_close(_grads(ref.apply, params, x), _grads(mine, params, x))


def test_route_sends_only_the_slow_cases_to_the_matmul_forms():
  calls = []

  def fallback(x, w, strides, padding, lhs_dilation=(1, 1)):
    calls.append(x.shape)
    return lax.conv_general_dilated(x, w, strides, padding, lhs_dilation=lhs_dilation,
                                    dimension_numbers=fastconv.DIMENSIONS)

  conv2d = fastconv.route(fallback)
  for shape, features, kernel, strides, padding in TRANSPOSED[:3]:  # transposed → matmul
    x, w = _input(shape), _input((*kernel, shape[-1], features))
    np.testing.assert_allclose(conv2d(x, w, (1, 1), padding, strides),
                               fallback(x, w, (1, 1), padding, strides), rtol=1e-4, atol=1e-4)
  x, w = _input((2, 8, 8, 4)), _input((5, 5, 4, 3))  # 8×8 → 4×4 VALID: its dx would expand
  _assert_close(_grads(lambda w, x: conv2d(x, w, (1, 1), ((0, 0), (0, 0))), w, x),
                _grads(lambda w, x: fallback(x, w, (1, 1), ((0, 0), (0, 0))), w, x))
  x, w = _input((2, 15, 15, 16)), _input((3, 3, 16, 32))  # strided → im2col matmul
  _assert_close(_grads(lambda w, x: conv2d(x, w, (2, 2), ((1, 1), (1, 1))), w, x),
                _grads(lambda w, x: fallback(x, w, (2, 2), ((1, 1), (1, 1))), w, x))
  n_fallback = len(calls)
  conv2d(_input((2, 14, 14, 16)), _input((3, 3, 16, 16)), (1, 1), ((1, 1), (1, 1)))
  assert len(calls) == n_fallback + 1  # an ordinary stride-1 3×3 conv stays with the fallback


@pytest.mark.parametrize("k", [1, fastconv.FMA_MAX_K, fastconv.FMA_MAX_K + 1])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_short_contractions_equal_the_matmul(k, dtype):
  a, b = _input((50, k)).astype(dtype), _input((k, 7)).astype(dtype)
  out = fastconv._matmul(a, b)  # pylint: disable=protected-access
  ref = jnp.dot(a, b, preferred_element_type=jnp.float32)
  assert out.dtype == dtype and out.shape == (50, 7)
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref), rtol=tol, atol=tol)
