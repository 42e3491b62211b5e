"""Kernel PCA → t-SNE (2-D) → KMeans over an N×D array, with scores and per-stage timings.

    import numpy as np
    from configs import cluster
    from ae_jax.clustering import pipeline
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 5)) + 8 * np.eye(5)[y]
    cfg = cluster.get_config()
    cfg.num_clusters = 3
    clusters, m, xy = pipeline.run_pipeline(x, cfg, labels=y)   # m['acc'] == 1.0

`metrics` holds `n`, `dim`, `num_clusters`, `seconds` (per stage and `total`),
`methods` (what ran: kernel-PCA method and eigen solver, t-SNE gradient method and
kNN), the detailed `kpca`/`tsne` settings, and when labels are given `acc`/`nmi`/`ari`
plus `clusters` (each cluster's size, majority class and purity).
Bad input raises `errors.UserError`.
"""
import time

import numpy as np

from ae_jax import data, errors
from ae_jax.clustering import kpca
from ae_jax.clustering import metrics as metrics_lib
from ae_jax.clustering import tsne


def validate(x, labels, num_clusters):
  """Checks shapes and values; returns (x float32 N×D, labels int N or None)."""
  x = np.asarray(x)
  if x.ndim != 2:
    raise errors.UserError(f"embeddings must be an N×D array; got shape {x.shape}")
  if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
    raise errors.UserError(f"embeddings must be real numbers, got dtype {x.dtype}")
  n, d = x.shape
  if n < 3 or d < 1:
    raise errors.UserError(f"embeddings need at least 3 rows and 1 column; got shape {x.shape}")
  x = x.astype(np.float32)
  if not np.isfinite(x).all():
    raise errors.UserError("embeddings contain NaN or infinite values")
  if not 1 <= num_clusters <= n:
    raise errors.UserError(f"num_clusters must be in [1, {n}] for {n} points; got {num_clusters}")
  if labels is not None:
    labels = data.check_labels(labels, n, "labels").astype(np.int64)
  if not np.ptp(x, axis=0).any():
    raise errors.UserError(f"all {n} embeddings are the same vector: there is nothing to cluster")
  return x, labels


def kmeans(xy, num_clusters, n_init=10, seed=0):
  """Cluster ids (int64, N) of the rows of xy from scikit-learn's KMeans, on one OpenMP thread.

  One thread: on 2-D points a second saves little and its spin-waits cost far more on a busy
  machine; experiments/README.md#clustering-speed-bench_clusterpy-and-quality-cluster_mnistpy.
  """
  from sklearn.cluster import KMeans  # pylint: disable=g-import-not-at-top
  from threadpoolctl import threadpool_limits  # pylint: disable=g-import-not-at-top
  km = KMeans(n_clusters=num_clusters, n_init=n_init, random_state=seed)
  with threadpool_limits(1, user_api="openmp"):
    return km.fit_predict(np.asarray(xy, np.float64)).astype(np.int64)


def embed_2d(z, ts, seed):
  """t-SNE map of z's rows; above `ts.max_n` rows it is fitted on a seeded subsample of that
  many and every other row is placed by `tsne.place` (median of its `ts.place_k` nearest
  fitted rows). Returns (xy n×2, info)."""
  n = len(z)
  fit = np.arange(n) if ts.max_n <= 0 or n <= ts.max_n else np.sort(
      np.random.default_rng(seed).choice(n, int(ts.max_n), replace=False))
  xy_fit, info = tsne.embed(z[fit], ts.perplexity, ts.early_exaggeration_iter,
                            ts.early_exaggeration, ts.n_iter, ts.exaggeration, ts.learning_rate,
                            ts.init, ts.method, ts.bh_max_n, ts.n_jobs, seed, ts.dof)
  info["fitted"] = int(len(fit))
  if len(fit) == n:
    return xy_fit, info
  t = time.perf_counter()
  rest = np.setdiff1d(np.arange(n), fit, assume_unique=True)
  xy = np.empty((n, 2), np.float32)
  xy[fit] = xy_fit
  xy[rest] = tsne.place(z[rest], z[fit], xy_fit, ts.place_k, ts.n_jobs, seed)
  info["seconds"]["place"] = time.perf_counter() - t
  info["placed"] = int(len(rest))
  info["place_k"] = int(ts.place_k)
  return xy, info


def run_pipeline(x_ND, cfg, labels=None):
  """Clusters the rows of x_ND; returns (cluster_labels N, metrics dict, xy N×2)."""
  x, labels = validate(x_ND, labels, int(cfg.num_clusters))
  seconds = {}
  t0 = t = time.perf_counter()
  kp = cfg.kpca
  if kp.n_components > 0:
    z, kinfo = kpca.fit_transform(x, kp.n_components, kp.gamma, kp.exact_max_n, kp.landmarks,
                                  kp.eigen_solver, int(cfg.seed))
  else:
    z, kinfo = x, {"method": "none"}
  seconds["kpca"] = time.perf_counter() - t
  t = time.perf_counter()
  xy, tinfo = embed_2d(z, cfg.tsne, int(cfg.seed))
  seconds["tsne"] = time.perf_counter() - t
  t = time.perf_counter()
  clusters = kmeans(xy, int(cfg.num_clusters), int(cfg.kmeans.n_init), int(cfg.seed))
  seconds["kmeans"] = time.perf_counter() - t
  seconds["total"] = time.perf_counter() - t0
  out = {
      "n": int(len(x)), "dim": int(x.shape[1]), "num_clusters": int(cfg.num_clusters),
      "seconds": seconds,
      "methods": {"kpca": kinfo["method"], "eigen_solver": kinfo.get("eigen_solver"),
                  "tsne": f"openTSNE-{tinfo['method']}", "knn": tinfo["knn"],
                  "kmeans": f"sklearn-n_init={int(cfg.kmeans.n_init)}"},
      "kpca": kinfo, "tsne": tinfo,
  }
  if labels is not None:
    out.update(metrics_lib.scores(labels, clusters))
    out["clusters"] = metrics_lib.cluster_summary(labels, clusters)
  return clusters, out, xy
