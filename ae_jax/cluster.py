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

from ae_jax import cli, data, errors
from ae_jax.clustering import encoder, pipeline, plot

_CONFIG = config_flags.DEFINE_config_file("config", None, "Clustering config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir: a trained run, or any directory "
                               "when --config.embeddings is given. Outputs go to WORKDIR/cluster.")
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


def load_inputs(cfg, workdir):
  """(x N×D, labels or None, ids, source dict) from --config.embeddings or the AE in workdir."""
  if cfg.embeddings:
    x = data.load_npy(cfg.embeddings, "embeddings")
    labels = data.load_npy(cfg.labels, "labels") if cfg.labels else None
    x, labels = pipeline.validate(x, labels, cfg.num_clusters)
    ids = _subsample(len(x), cfg.max_points, cfg.seed)
    return x[ids], None if labels is None else labels[ids], ids, {"embeddings": cfg.embeddings}
  labels = data.load_npy(cfg.labels, "labels") if cfg.labels else None
  config, model, variables, step = encoder.restore(workdir, cfg.checkpoint_step)
  ds = encoder.dataset(cfg, config)
  if labels is not None:
    _, labels = pipeline.validate(np.zeros((len(ds), 1)), labels, cfg.num_clusters)
  ids = _subsample(len(ds), cfg.max_points, cfg.seed)
  ds = ds.take(ids)
  labels = ds.labels if labels is None else labels[ids]
  x = encoder.encode(model, variables, ds.images, config, cfg.batch_size)
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
  """The whole command; returns the metrics dict written to metrics.json."""
  _check_workdir(workdir)
  if cfg.all_checkpoints and cfg.embeddings:
    raise errors.UserError("all_checkpoints needs the AE in the workdir, not --config.embeddings")
  t = time.perf_counter()
  x, labels, ids, source = load_inputs(cfg, workdir)
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
    rows = encoder.checkpoint_curve(cfg, workdir)
    writers["checkpoint_curve.json"] = _write_json(rows)
    writers["checkpoint_curve.png"] = lambda p: plot.curve(p, rows, fmt="png")
  _replace_all(os.path.join(workdir, OUT_SUBDIR), writers)
  return metrics


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  cfg = _CONFIG.value
  metrics = run(cfg, _WORKDIR.value)
  scores = "".join(f" {k}={metrics[k]:.4f}" for k in ("acc", "nmi", "ari") if k in metrics)
  print(f"clustered {metrics['n']} points into {metrics['num_clusters']} clusters "
        f"({metrics['methods']['kpca']} kernel PCA, {metrics['methods']['tsne']}) in "
        f"{metrics['seconds']['total']:.1f}s;{scores} -> "
        f"{os.path.join(_WORKDIR.value, OUT_SUBDIR)}", flush=True)


if __name__ == "__main__":
  cli.run(main)
