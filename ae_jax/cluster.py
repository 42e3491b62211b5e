"""Clustering command: encode with the AE in the workdir (or take an N×D .npy), then
kernel PCA → t-SNE (2-D) → KMeans; writes DIR/cluster/{labels.csv,metrics.json,embedding.png}.

    python -m ae_jax.cluster --config=configs/cluster.py --workdir=/tmp/mlp
    python -m ae_jax.cluster --config=configs/cluster.py --workdir=/tmp/c \
        --config.embeddings=z.npy --config.labels=y.npy --config.num_clusters=10
    python -m ae_jax.cluster --config=configs/cluster.py --workdir=/tmp/mlp \
        --config.all_checkpoints=True     # + checkpoint_curve.{png,json}

`labels.csv` has one row per clustered point: `id` (row of the embeddings, or index
in the dataset split) and `label` (cluster). Input is validated before anything is
written; outputs replace the old ones only once all of them are ready.
"""
import json
import os
import time

import numpy as np
from absl import flags
from ml_collections import config_flags

from ae_jax import checkpoint, cli, data, distributed, errors, inference
from ae_jax.clustering import pipeline, plot

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags (defined when run as a program, so importing `run` defines none)."""
  config_flags.DEFINE_config_file("config", None, "Clustering config file.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Workdir: a trained run, or any directory when "
                      "--config.embeddings is given. Outputs go to WORKDIR/cluster.")
  distributed.define_flags()
  flags.mark_flags_as_required(["config", "workdir"])

OUT_SUBDIR = "cluster"


def _check_workdir(workdir):
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.UserError(f"--workdir={workdir} is a file, not a directory")
  out = os.path.join(workdir, OUT_SUBDIR)
  if os.path.exists(out) and not os.path.isdir(out):
    raise errors.UserError(f"{out} exists and is not a directory")


def _subsample(n, max_points, seed):
  if max_points <= 0 or max_points >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def _step(cfg):
  """The checkpoint step to encode with: None (newest) for a negative `checkpoint_step`."""
  return None if cfg.checkpoint_step < 0 else int(cfg.checkpoint_step)


def _dataset(cfg, config, lazy=False):
  """The dataset to encode: cfg.dataset, else the one the run in the workdir trained on
  (`lazy`: its images read a batch at a time)."""
  ds = data.load(cfg.dataset or config.dataset, cfg.data_dir or config.data_dir, split=cfg.split,
                 lazy=lazy)
  inference.check_image_shape(ds, config)
  return ds


def checkpoint_curve(cfg, workdir):
  """Per kept checkpoint: train-split reconstruction MSE and val-split clustering scores.

  The validation split is the training run's own (`data.split` with its `val_fraction`
  and `seed`), so `val_acc` is measured on images the AE never trained on."""
  config, _, _, _ = checkpoint.load_for_inference(workdir, _step(cfg))
  train, val = data.split(_dataset(cfg, config), config.val_fraction, config.seed)
  if len(val) < max(3, cfg.num_clusters):
    raise errors.UserError(f"the run's validation split has {len(val)} images; all_checkpoints "
                           f"needs at least {max(3, cfg.num_clusters)} (val_fraction > 0)")
  rows = []
  for step in checkpoint.steps(checkpoint.manager(workdir, create=False)):
    _, model, variables, _ = checkpoint.load_for_inference(workdir, step)
    row = {"step": int(step),
           "train_mse": inference.reconstruction_mse(model, variables, train.images, cfg.batch_size)}
    z = inference.embed(model, variables, val.images, cfg.batch_size)
    _, m, _ = pipeline.run_pipeline(z, cfg, val.labels)
    row.update({f"val_{k}": m[k] for k in ("acc", "nmi", "ari") if k in m})
    row["seconds"] = m["seconds"]["total"]
    rows.append(row)
  return rows


def load_inputs(cfg, workdir):
  """(x N×D, labels or None, ids, source dict) from --config.embeddings or the AE in workdir."""
  if cfg.embeddings:
    x = data.load_npy(cfg.embeddings, "embeddings")
    labels = data.load_npy(cfg.labels, "labels") if cfg.labels else None
    x, labels = pipeline.validate(x, labels, cfg.num_clusters)
    ids = _subsample(len(x), cfg.max_points, cfg.seed)
    return x[ids], None if labels is None else labels[ids], ids, {"embeddings": cfg.embeddings}
  labels = data.load_npy(cfg.labels, "labels") if cfg.labels else None
  config, model, variables, step = checkpoint.load_for_inference(workdir, _step(cfg))
  ds = _dataset(cfg, config, lazy=True)
  if labels is not None:
    _, labels = pipeline.validate(np.zeros((len(ds), 1)), labels, cfg.num_clusters)
  ids = _subsample(len(ds), cfg.max_points, cfg.seed)
  ds = ds.take(ids)
  labels = ds.labels if labels is None else labels[ids]
  x = inference.embed_shared(model, variables, ds.images, cfg.batch_size)
  return x, labels, ids, {"dataset": ds.name, "split": cfg.split, "checkpoint_step": int(step)}


def _replace_all(out_dir, writers):
  """Writes every file under a temporary name first, then renames them into place."""
  os.makedirs(out_dir, exist_ok=True)
  staged = []
  try:
    for name, write in writers.items():
      tmp = os.path.join(out_dir, f".{name}.{os.getpid()}.tmp")
      staged.append((tmp, os.path.join(out_dir, name)))
      write(tmp)
    for tmp, final in staged:
      os.replace(tmp, final)
  finally:
    for tmp, _ in staged:
      if os.path.exists(tmp):
        os.remove(tmp)


def _write_json(obj):
  def write(path):
    with open(path, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")
  return write


def _write_labels(ids, clusters):
  def write(path):
    with open(path, "w") as f:
      f.write("id,label\n")
      f.writelines(f"{i},{c}\n" for i, c in zip(ids.tolist(), clusters.tolist()))
  return write


def run(cfg, workdir):
  """The whole command; returns the metrics dict written to metrics.json (None on a process
  other than 0 of a many-process job, once it has encoded its share)."""
  _check_workdir(workdir)
  if cfg.all_checkpoints and cfg.embeddings:
    raise errors.UserError("all_checkpoints needs the AE in the workdir, not --config.embeddings")
  t = time.perf_counter()
  x, labels, ids, source = load_inputs(cfg, workdir)  # every process encodes a share
  if not distributed.is_primary():
    return None
  load_s = time.perf_counter() - t
  clusters, metrics, xy = pipeline.run_pipeline(x, cfg, labels)
  metrics["seconds"] = {"encode" if "dataset" in source else "load": load_s,
                        **metrics["seconds"]}
  metrics["seconds"]["total"] = time.perf_counter() - t
  metrics["source"] = source
  writers = {"labels.csv": _write_labels(ids, clusters), "metrics.json": _write_json(metrics)}
  title = f"n={len(x)}, k={cfg.num_clusters}" + (
      f", acc={metrics['acc']:.3f}, nmi={metrics['nmi']:.3f}" if "acc" in metrics else "")
  writers["embedding.png"] = lambda p: plot.embedding(p, xy, clusters, labels, title, fmt="png")
  if cfg.all_checkpoints:
    rows = checkpoint_curve(cfg, workdir)
    writers["checkpoint_curve.json"] = _write_json(rows)
    writers["checkpoint_curve.png"] = lambda p: plot.curve(p, rows, fmt="png")
  _replace_all(os.path.join(workdir, OUT_SUBDIR), writers)
  return metrics


def main(argv):
  """Runs the command on the parsed flags."""
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  distributed.initialize()
  metrics = run(FLAGS.config, FLAGS.workdir)
  if metrics is None:
    print("cluster: process 0 clusters the embeddings; this process encoded its share", flush=True)
    return
  scores = "".join(f" {k}={metrics[k]:.4f}" for k in ("acc", "nmi", "ari") if k in metrics)
  print(f"clustered {metrics['n']} points into {metrics['num_clusters']} clusters "
        f"({metrics['methods']['kpca']} kernel PCA, {metrics['methods']['tsne']}) in "
        f"{metrics['seconds']['total']:.1f}s;{scores} -> "
        f"{os.path.join(FLAGS.workdir, OUT_SUBDIR)}", flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
