"""On-device online augmentation: random small rotations and shifts, inside the jitted step.

    x_aug_BHWC = augment.random_affine(key, x01_BHWC, max_degrees=10.0, max_shift=2.0)
"""
import jax
import jax.numpy as jnp


def _affine_one(x_HWC, theta, shift_2):
  """Rotates by `theta` (radians) about the centre and shifts by `shift_2` pixels (bilinear, 0 fill)."""
  h, w, c = x_HWC.shape
  ii, jj = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  ci, cj = (h - 1) / 2.0, (w - 1) / 2.0
  di, dj = ii - ci - shift_2[0], jj - cj - shift_2[1]
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  src_i = cos * di - sin * dj + ci
  src_j = sin * di + cos * dj + cj
  sample = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [src_i, src_j], order=1, mode="constant")
  return jnp.stack([sample(x_HWC[..., k]) for k in range(c)], axis=-1)


def random_affine(key, x01_BHWC, *, max_degrees=10.0, max_shift=2.0):
  """Per-example rotation in ±max_degrees and shift in ±max_shift pixels; [0,1] images."""
  b = x01_BHWC.shape[0]
  k_rot, k_shift = jax.random.split(key)
  theta = jnp.deg2rad(jax.random.uniform(k_rot, (b,), minval=-max_degrees, maxval=max_degrees))
  shift = jax.random.uniform(k_shift, (b, 2), minval=-max_shift, maxval=max_shift)
  return jax.vmap(_affine_one)(x01_BHWC, theta, shift)
