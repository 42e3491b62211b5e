"""The autoencoder side of clustering: restore a workdir's checkpoint, encode a dataset in
fixed-size jitted batches, and score every kept checkpoint (train MSE, val clustering).

    from configs import cluster
    from ae_jax.clustering import encoder
    cfg = cluster.get_config()
    config, model, variables, step = encoder.restore('/tmp/mlp', step=-1)   # newest
    ds = encoder.dataset(cfg, config)          # the run's dataset unless cfg.dataset is set
    z_ND = encoder.encode(model, variables, ds.images, config, batch_size=1000)
    rows = encoder.checkpoint_curve(cfg, '/tmp/mlp')   # [{'step', 'train_mse', 'val_acc', ...}]

The validation split is the training run's own (`data.split` with its `val_fraction`
and `seed`), so `val_acc` is measured on images the AE never trained on.
"""
import numpy as np

from ae_jax import checkpoint, data, errors, inference
from ae_jax.clustering import pipeline


def restore(workdir, step=-1):
  """(config, model, variables, step) of the newest checkpoint (step < 0) or of `step`."""
  return checkpoint.load_for_inference(workdir, None if step is None or step < 0 else int(step))


def dataset(cfg, config, split=None):
  """The dataset to encode: cfg.dataset, else the one the run in the workdir trained on."""
  ds = data.load(cfg.dataset or config.dataset, cfg.data_dir or config.data_dir,
                 split=split or cfg.split)
  inference.check_image_shape(ds, config)
  return ds


def encode(model, variables, images, config, batch_size=1000):
  """N [0,1] images → N×D float32 latents, through one jitted apply of a fixed batch size."""
  z = inference.encode(model, variables, images, config.pixel_range, batch_size)
  return np.asarray(z, np.float32).reshape(len(images), -1)


def reconstruction_mse(model, variables, images, config, batch_size=1000, chunk=8192):
  """Mean squared reconstruction error in the model's pixel range (the training MSE's scale)."""
  total, count = 0.0, 0
  for s in range(0, len(images), chunk):
    x = np.asarray(images[s:s + chunk], np.float32)
    r = inference.reconstruct(model, variables, x, config.pixel_range, batch_size)
    diff = data.to_range(r, config.pixel_range) - data.to_range(x, config.pixel_range)
    total += float(np.square(diff, dtype=np.float64).sum())
    count += diff.size
  return total / count


def checkpoint_curve(cfg, workdir):
  """Per kept checkpoint: train-split reconstruction MSE and val-split clustering scores."""
  config, _, _, _ = restore(workdir, cfg.checkpoint_step)
  full = dataset(cfg, config)
  train, val = data.split(full, config.val_fraction, config.seed)
  if len(val) < max(3, cfg.num_clusters):
    raise errors.UserError(f"the run's validation split has {len(val)} images; all_checkpoints "
                           f"needs at least {max(3, cfg.num_clusters)} (val_fraction > 0)")
  mngr = checkpoint.manager(workdir, create=False)
  rows = []
  for step in checkpoint.steps(mngr):
    config, model, variables, _ = restore(workdir, step)
    row = {"step": int(step),
           "train_mse": reconstruction_mse(model, variables, train.images, config, cfg.batch_size)}
    z = encode(model, variables, val.images, config, cfg.batch_size)
    _, m, _ = pipeline.run_pipeline(z, cfg, val.labels)
    row.update({f"val_{k}": m[k] for k in ("acc", "nmi", "ari") if k in m})
    row["seconds"] = m["seconds"]["total"]
    rows.append(row)
  return rows
