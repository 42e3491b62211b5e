"""Figures from a trained autoencoder: generation, interpolation, denoising, reconstructions.

Library functions return [0,1] image arrays; `save_*` writes `DIR/plots/NAME.png`.

    config, model, variables, _ = checkpoint.load_for_inference(workdir)
    frames = figures.interpolate(model, variables, x_a, x_b, config.pixel_range, steps=10)
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from ae_jax import data, visualize
from ae_jax.inference import decode, encode, reconstruct


def interpolate(model, variables, x_a, x_b, pixel_range, steps=10):
  """Decodes z_a + t·(z_b − z_a) for t = 0 … 1 in `steps` steps (report 004).
  The endpoints are the reconstructions of x_a and x_b."""
  z = jnp.asarray(encode(model, variables, np.stack([x_a, x_b]), pixel_range))
  t = jnp.linspace(0.0, 1.0, steps)[:, None]
  return decode(model, variables, z[0] + t * (z[1] - z[0]), pixel_range)


def denoise(model, variables, x01, pixel_range, noise_std, rng):
  """(noisy, denoised): Gaussian noise of `noise_std` added in [0,1] pixel space."""
  noisy = np.asarray(x01 + noise_std * jax.random.normal(rng, x01.shape), np.float32)
  return noisy, reconstruct(model, variables, noisy, pixel_range)


def generate(model, variables, ds, pixel_range, rng, scales=(0.1, 0.2, 0.3, 0.4, 0.5)):
  """Per class, one example's latent plus Gaussian noise of each scale (report 001).
  Returns (rows, row_names); a model with `sample` (VAE) adds a row of prior samples."""
  classes = range(ds.num_classes) if ds.labels is not None else [None]
  rows, names = [], []
  for c in classes:
    i = int(np.flatnonzero(ds.labels == c)[0]) if c is not None else 0
    z = jnp.asarray(encode(model, variables, ds.images[i:i + 1], pixel_range))
    eps = jax.random.normal(jax.random.fold_in(rng, i), (len(scales), z.shape[-1]))
    rows.append(decode(model, variables, z + jnp.asarray(scales)[:, None] * eps, pixel_range))
    names.append(ds.class_names[c] if ds.class_names and c is not None else str(c if c is not None else "x"))
  if hasattr(model, "sample"):
    prior = model.apply(variables, rng, len(scales), method="sample")
    rows.append(np.asarray(data.from_range(prior, pixel_range)))
    names.append("prior")
  return rows, names


def _plot(workdir, name):
  return os.path.join(workdir, "plots", f"{name}.png")


def save_generated(workdir, model, variables, ds, pixel_range, seed=0):
  rows, names = generate(model, variables, ds, pixel_range, jax.random.PRNGKey(seed))
  return visualize.image_rows(rows, names, _plot(workdir, "generated"),
                              col_names=[f"σ={s / 10:.1f}" for s in range(1, 6)],
                              title="latent of one example per class + Gaussian noise")


def save_interpolation(workdir, model, variables, ds, pixel_range, i, j, steps=10):
  frames = interpolate(model, variables, ds.images[i], ds.images[j], pixel_range, steps)
  return visualize.image_rows([frames], [f"{i}→{j}"], _plot(workdir, "interpolation"),
                              col_names=[f"{t:.2f}" for t in np.linspace(0, 1, steps)])


def save_denoise(workdir, model, variables, ds, pixel_range, indices, noise_std, seed=0):
  x = ds.images[list(indices)]
  noisy, clean = denoise(model, variables, x, pixel_range, noise_std, jax.random.PRNGKey(seed))
  return visualize.image_rows([x, noisy, clean], ["clean", f"noisy σ={noise_std}", "denoised"],
                              _plot(workdir, "denoise"), col_names=list(indices))


def save_reconstructions(workdir, model, variables, ds, pixel_range, indices):
  idx = [i for i in indices if 0 <= i < len(ds)]
  recon = reconstruct(model, variables, ds.images[idx], pixel_range)
  return visualize.image_rows([ds.images[idx], recon], ["original", "reconstruction"],
                              _plot(workdir, "reconstructions"), col_names=idx)
