"""The one plotting module: loss curves, image grids, and an autoencoder's figures
(generation, interpolation, denoising, reconstructions). matplotlib `Figure`s, no pyplot state.

Library functions return [0,1] image arrays; `save_*` writes `DIR/plots/NAME.png`.

    config, model, variables, _ = checkpoint.load_for_inference(workdir)
    frames = figures.interpolate(model, variables, x_a, x_b, steps=10)
    figures.save_reconstructions(workdir, model, variables, ds, indices=(0, 1, 2))
    figures.loss_curve(report.read_metrics(workdir), 'plots/loss_curve.png')
    figures.image_rows([originals, recons], ['original', 'reconstruction'], 'plots/r.png')
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from ae_jax import data
from ae_jax.inference import decode, encode, reconstruct


def _save(fig, path):
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  return path


def loss_curve(metrics, path):
  """Train loss (per log line), eval loss (per epoch) and the learning rate, against step."""
  fig = Figure(figsize=(7, 4))
  ax = fig.subplots()
  for key, style in (("train_loss", "-"), ("eval_loss", "o-")):
    pts = [(m["step"], m[key]) for m in metrics if key in m]
    if pts:
      ax.plot(*zip(*pts), style, label=key, markersize=3)
  ax.set_xlabel("step")
  ax.set_ylabel("loss")
  ax.set_yscale("log")
  lrs = [(m["step"], m["learning_rate"]) for m in metrics if "learning_rate" in m]
  if lrs:
    ax2 = ax.twinx()
    ax2.plot(*zip(*lrs), "k:", label="learning_rate")
    ax2.set_yscale("log")
    ax2.set_ylabel("learning rate (dotted)")
  if ax.lines:
    ax.legend(loc="upper right")
  ax.set_title("loss curve")
  return _save(fig, path)


def image_rows(rows, row_names, path, col_names=None, title=None):
  """A grid: one row per N×H×W×C array in [0,1]; row names on the left."""
  n_rows, n_cols = len(rows), max(len(r) for r in rows)
  fig = Figure(figsize=(1.3 * n_cols + 1, 1.4 * n_rows))
  axes = fig.subplots(n_rows, n_cols, squeeze=False)
  for i, row in enumerate(rows):
    for j in range(n_cols):
      ax = axes[i, j]
      ax.set_xticks([])
      ax.set_yticks([])
      for s in ax.spines.values():
        s.set_visible(False)
      if j < len(row):
        img = np.clip(np.asarray(row[j], np.float32), 0, 1)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
      if j == 0:
        ax.set_ylabel(row_names[i], rotation=0, ha="right", va="center", fontsize=9)
      if col_names and i == 0 and j < len(col_names):
        ax.set_title(str(col_names[j]), fontsize=8)
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def interpolate(model, variables, x_a, x_b, steps=10):
  """Decodes z_a + t·(z_b − z_a) for t = 0 … 1 in `steps` steps (report 004).
  The endpoints are the reconstructions of x_a and x_b."""
  z = jnp.asarray(encode(model, variables, np.stack([x_a, x_b])))
  t = jnp.linspace(0.0, 1.0, steps)[:, None]
  return decode(model, variables, z[0] + t * (z[1] - z[0]))


def denoise(model, variables, x01, noise_std, rng):
  """(noisy, denoised): Gaussian noise of `noise_std` added in [0,1] pixel space."""
  x01 = data.as_unit(np.asarray(x01))
  noisy = np.asarray(x01 + noise_std * jax.random.normal(rng, x01.shape), np.float32)
  return noisy, reconstruct(model, variables, noisy)


def generate(model, variables, ds, rng, scales=(0.1, 0.2, 0.3, 0.4, 0.5)):
  """Per class, one example's latent plus Gaussian noise of each scale (report 001).
  Returns (rows, row_names); a model with `sample` (VAE) adds a row of prior samples."""
  classes = range(ds.num_classes) if ds.labels is not None else [None]
  rows, names = [], []
  for c in classes:
    i = int(np.flatnonzero(ds.labels == c)[0]) if c is not None else 0
    z = jnp.asarray(encode(model, variables, ds.images[i:i + 1]))
    eps = jax.random.normal(jax.random.fold_in(rng, i), (len(scales), z.shape[-1]))
    rows.append(decode(model, variables, z + jnp.asarray(scales)[:, None] * eps))
    names.append(ds.class_names[c] if ds.class_names and c is not None else str(c if c is not None else "x"))
  if hasattr(model, "sample"):
    prior = model.apply(variables, rng, len(scales), method="sample")
    rows.append(np.asarray(model.pixel_range.to_unit(prior)))
    names.append("prior")
  return rows, names


def _plot(workdir, name):
  return os.path.join(workdir, "plots", f"{name}.png")


def save_generated(workdir, model, variables, ds, seed=0):
  """plots/generated.png: `generate`'s rows."""
  rows, names = generate(model, variables, ds, jax.random.PRNGKey(seed))
  return image_rows(rows, names, _plot(workdir, "generated"),
                              col_names=[f"σ={s / 10:.1f}" for s in range(1, 6)],
                              title="latent of one example per class + Gaussian noise")


def save_interpolation(workdir, model, variables, ds, i, j, steps=10):
  """plots/interpolation.png: `interpolate` between images i and j of ds."""
  frames = interpolate(model, variables, ds.images[i], ds.images[j], steps)
  return image_rows([frames], [f"{i}→{j}"], _plot(workdir, "interpolation"),
                              col_names=[f"{t:.2f}" for t in np.linspace(0, 1, steps)])


def save_denoise(workdir, model, variables, ds, indices, noise_std, seed=0):
  """plots/denoise.png: clean, noisy and denoised rows for ds.images[indices]."""
  x = data.as_unit(ds.images[list(indices)])
  noisy, clean = denoise(model, variables, x, noise_std, jax.random.PRNGKey(seed))
  return image_rows([x, noisy, clean], ["clean", f"noisy σ={noise_std}", "denoised"],
                              _plot(workdir, "denoise"), col_names=list(indices))


def save_reconstructions(workdir, model, variables, ds, indices):
  """plots/reconstructions.png: originals above reconstructions (indices outside ds skipped)."""
  idx = [i for i in indices if 0 <= i < len(ds)]
  recon = reconstruct(model, variables, ds.images[idx])
  return image_rows([data.as_unit(ds.images[idx]), recon], ["original", "reconstruction"],
                              _plot(workdir, "reconstructions"), col_names=idx)
