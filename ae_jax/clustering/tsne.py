"""t-SNE to 2-D with openTSNE on an exact kNN graph; Barnes-Hut for small n, FFT above.

    import numpy as np
    from ae_jax.clustering import tsne
    z = np.random.default_rng(0).normal(size=(300, 10)).astype(np.float32)
    xy, info = tsne.embed(z, perplexity=10, early_exaggeration_iter=50, n_iter=100)
    # xy: 300×2; info['method'] == 'bh', info['knn'] == 'exact'

The kNN graph (k = 3·perplexity) is exact: blocked |a-b|² matmuls, then per row only the
entries below a bound taken from a random probe of columns are sorted (a full
`argpartition` of every row costs more than the matmul). Split over threads, holding
only `block × n` distances per thread. openTSNE then calibrates the perplexity on those
neighbours and runs two phases: `early_exaggeration_iter` steps at `early_exaggeration`
(momentum 0.5), then `n_iter` steps at `exaggeration` (momentum 0.8). A final
exaggeration above 1 makes clusters more compact, which is what KMeans wants.
The gradient method is Barnes-Hut up to `bh_max_n` points and FFT interpolation above
(FFT has a fixed cost per step that Barnes-Hut beats on small n;
experiments/README.md#clustering-speed-bench_clusterpy-and-quality-cluster_mnistpy).
"""
import concurrent.futures
import os
import time

import numpy as np


def _threads(n_jobs):
  return max(1, int(n_jobs) if n_jobs and n_jobs > 0 else (os.cpu_count() or 1))


def _select(h, k, probe):
  """Row-wise k smallest of h (flat indices into a row, values), sorted ascending.

  With `probe` (a column subset), the k-th smallest over the probe bounds each row's k-th
  smallest from above, so only the few entries under that bound (≈ k·n/|probe| a row) are
  gathered and partitioned: exact, and far cheaper than an `argpartition` of full rows.
  """
  if probe is None:
    part = np.argpartition(h, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(h, part, 1)
  else:
    bound = np.partition(h[:, probe], k - 1, axis=1)[:, k - 1]
    flat = np.flatnonzero(h <= bound[:, None])  # row-major, so rows come out ascending
    rows, cols = np.divmod(flat, h.shape[1])
    counts = np.bincount(rows, minlength=h.shape[0])
    slot = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    cand = np.full((h.shape[0], counts.max()), np.inf, h.dtype)
    cand_idx = np.zeros(cand.shape, np.int64)
    cand[rows, slot], cand_idx[rows, slot] = h.ravel()[flat], cols
    part = np.argpartition(cand, k - 1, axis=1)[:, :k]
    vals, part = np.take_along_axis(cand, part, 1), np.take_along_axis(cand_idx, part, 1)
  order = np.argsort(vals, axis=1)
  return np.take_along_axis(part, order, 1), np.take_along_axis(vals, order, 1)


def knn(z, k, block=0, n_jobs=0, seed=0, ref=None):
  """Exact k nearest neighbours: (idx n×k int64, dist n×k) of every row of z among the rows
  of `ref`, or with `ref=None` among z's other rows (itself excluded).

  Each thread takes blocks of rows against all m reference rows with one matmul into a
  reused buffer: [a, 1]·[-2b, |b|²]ᵀ = |b|² - 2a·b, which ranks a row's neighbours like
  |a-b|² (the row's own |a|² is a constant), then `_select`. At most `block × m` floats a
  thread.
  """
  from threadpoolctl import threadpool_limits  # pylint: disable=g-import-not-at-top
  z = np.asarray(z, np.float32)
  self_knn = ref is None
  ref = z if self_knn else np.asarray(ref, np.float32)
  n, m = len(z), len(ref)
  if not 0 < k < m + (not self_knn):
    raise ValueError(f"k must be in [1, {m - self_knn}], got {k}")
  block = min(n, block or int(np.clip(2**24 // m, 64, 1024)))
  sq = (z * z).sum(1)
  sq_ref = (ref * ref).sum(1)
  left = np.concatenate([z, np.ones((n, 1), np.float32)], 1)
  right = np.ascontiguousarray(np.concatenate([-2.0 * ref, sq_ref[:, None]], 1).T)
  probe_size = max(2048, 8 * k)
  probe = None if m < 8 * probe_size else np.sort(
      np.random.default_rng(seed).choice(m, probe_size, replace=False))
  idx = np.empty((n, k), np.int64)
  dist = np.empty((n, k), np.float32)
  threads = _threads(n_jobs)

  def work(starts):
    buf = np.empty((block, m), np.float32)
    for start in starts:
      s = slice(start, min(start + block, n))
      h = buf[:s.stop - start]
      np.matmul(left[s], right, out=h)
      if self_knn:
        rows = np.arange(len(h))
        h[rows, rows + start] = np.inf
      idx[s], vals = _select(h, k, probe)
      dist[s] = np.sqrt(np.maximum(vals + sq[s, None], 0.0))

  starts = list(range(0, n, block))
  with threadpool_limits(1 if threads > 1 else None, user_api="blas"):
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
      list(pool.map(work, [starts[i::threads] for i in range(threads)]))
  return idx, dist


def place(z, ref_z, ref_xy, k=10, n_jobs=0, seed=0):
  """2-D positions for new rows z: the coordinate-wise median of the map positions `ref_xy`
  of their k nearest rows in `ref_z` (openTSNE's `prepare_partial` placement, on our exact
  kNN); returns n×2 float32."""
  k = int(min(k, len(ref_z)))
  idx, _ = knn(z, k, n_jobs=n_jobs, seed=seed, ref=ref_z)
  out = np.empty((len(z), 2), np.float32)
  for s in range(0, len(z), 65536):  # bounded k×block×2 gather
    out[s:s + 65536] = np.median(np.asarray(ref_xy, np.float32)[idx[s:s + 65536]], axis=1)
  return out


def _init(init, z, affinities, seed):
  from openTSNE import initialization  # pylint: disable=g-import-not-at-top
  if init == "pca":
    if z.shape[1] < 2:  # one feature: its PCA has one axis; the second starts at zero
      z = np.concatenate([z, np.zeros_like(z)], axis=1)
    return initialization.pca(z, random_state=seed)
  if init == "random":
    return initialization.random(len(z), random_state=seed)
  if init == "spectral":
    return initialization.spectral(affinities.P, random_state=seed)
  raise ValueError(f"unknown t-SNE init {init!r}; use pca, random or spectral")


def embed(z, perplexity=30.0, early_exaggeration_iter=250, early_exaggeration=12.0,
          n_iter=500, exaggeration=1.0, learning_rate=0.0, init="pca", method="auto",
          bh_max_n=1500, n_jobs=0, seed=0, dof=1.0):
  """2-D t-SNE of z (n×d); returns (xy n×2 float32, info with the methods and timings)."""
  from openTSNE import affinity, nearest_neighbors  # pylint: disable=g-import-not-at-top
  from openTSNE import TSNEEmbedding  # pylint: disable=g-import-not-at-top
  z = np.asarray(z, np.float32)
  n = len(z)
  perplexity = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
  k = int(min(n - 1, max(1, round(3 * perplexity))))
  if method == "auto":
    method = "bh" if n <= bh_max_n else "fft"
  threads = _threads(n_jobs)
  # By default Barnes-Hut gets one thread (its threads cost more CPU than they save), FFT
  # and kNN all of them; see
  # experiments/README.md#clustering-speed-bench_clusterpy-and-quality-cluster_mnistpy.
  grad_threads = 1 if method == "bh" and not (n_jobs and n_jobs > 0) else threads
  seconds = {}
  t = time.perf_counter()
  idx, dist = knn(z, k, n_jobs=threads, seed=seed)
  seconds["knn"] = time.perf_counter() - t
  t = time.perf_counter()
  p = affinity.PerplexityBasedNN(
      perplexity=perplexity, n_jobs=threads, random_state=seed,
      knn_index=nearest_neighbors.PrecomputedNeighbors(idx, dist))
  emb = TSNEEmbedding(_init(init, z, p, seed), p, n_jobs=grad_threads, random_state=seed,
                      negative_gradient_method=method)
  seconds["affinities"] = time.perf_counter() - t
  t = time.perf_counter()
  lr = learning_rate if learning_rate and learning_rate > 0 else "auto"
  if early_exaggeration_iter > 0:
    emb = emb.optimize(early_exaggeration_iter, exaggeration=early_exaggeration,
                       momentum=0.5, learning_rate=lr, dof=dof)
  if n_iter > 0:
    emb = emb.optimize(n_iter, exaggeration=exaggeration, momentum=0.8, learning_rate=lr, dof=dof)
  seconds["optimize"] = time.perf_counter() - t
  info = {"method": method, "knn": "exact", "k": k, "perplexity": perplexity, "init": init,
          "early_exaggeration_iter": int(early_exaggeration_iter),
          "early_exaggeration": float(early_exaggeration), "n_iter": int(n_iter),
          "exaggeration": float(exaggeration), "dof": float(dof),
          "threads": {"knn": threads, "gradient": grad_threads}, "seconds": seconds}
  return np.asarray(emb, np.float32), info
