"""RBF kernel PCA: exact for small n, Nyström (m landmarks) + PCA in bounded memory above.

Kernel k(x, y) = exp(-gamma · |x - y|²). The default gamma (`gamma <= 0`) is the median
heuristic: gamma = 1 / (2 · median |x - y|²) over up to 2,000 sampled points, i.e. the
kernel width σ is the median pairwise distance, so it follows the data scale.

    import numpy as np
    from ae_jax.clustering import kpca
    x = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    z, info = kpca.fit_transform(x, n_components=20)  # z: 500×20; info['method'] == 'exact'
    z, info = kpca.fit_transform(x, n_components=20, exact_max_n=100, landmarks=200)  # 'nystroem'

`exact` builds the full n×n centred kernel (n² floats) and takes its top eigenpairs
(`eigh` for small n, a randomized subspace iteration above `dense_max_n`); `nystroem`
never holds more than `block × landmarks` kernel entries at once plus the m×m matrices.
Both return z = U·sqrt(λ) (the kernel-PCA projections of the training points, as
scikit-learn's `KernelPCA.fit_transform`).
"""
import numpy as np
import scipy.linalg


def sq_dists(a, b):
  """|a_i - b_j|² for row sets a (n×d) and b (m×d), float32, clipped at 0."""
  a = np.asarray(a, np.float32)
  b = np.asarray(b, np.float32)
  d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
  return np.maximum(d, 0.0, out=d)


def rbf(a, b, gamma):
  """RBF kernel matrix exp(-gamma · |a_i - b_j|²) between row sets a and b."""
  return np.exp(-gamma * sq_dists(a, b))


def median_gamma(x, seed=0, sample=2000):
  """Median heuristic: 1 / (2 · median squared distance) over a seeded sample of points."""
  rng = np.random.default_rng(seed)
  idx = rng.choice(len(x), min(len(x), sample), replace=False)
  d = sq_dists(x[idx], x[idx])
  med = float(np.median(d[np.triu_indices(len(idx), k=1)])) if len(idx) > 1 else 0.0
  return 1.0 / (2.0 * med) if med > 0 else 1.0


def _flip_signs(v):
  """Deterministic eigenvector signs: the largest-magnitude entry of each column is positive."""
  i = np.abs(v).argmax(0)
  return v * np.sign(v[i, np.arange(v.shape[1])] + 1e-300)


def top_eigh(a, k, solver="auto", seed=0, dense_max_n=1500, n_iter=4, oversample=20):
  """Top-k eigenpairs (descending) of a symmetric PSD matrix; returns (w_k, v_nk, solver)."""
  n = a.shape[0]
  k = min(k, n)
  if solver == "auto":
    solver = "dense" if n <= dense_max_n or k + oversample >= n // 2 else "randomized"
  if solver == "dense":
    w, v = scipy.linalg.eigh(a, subset_by_index=(n - k, n - 1))
  elif solver == "randomized":
    # Block subspace iteration with QR re-orthonormalisation, then Rayleigh-Ritz.
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(a @ rng.standard_normal((n, k + oversample)).astype(a.dtype))[0]
    for _ in range(n_iter):
      q = np.linalg.qr(a @ q)[0]
    w, s = np.linalg.eigh(q.T @ (a @ q))
    w, v = w[-k:], q @ s[:, -k:]
  else:
    raise ValueError(f"unknown eigen solver {solver!r}; use auto, dense or randomized")
  w, v = w[::-1].astype(np.float64), v[:, ::-1]
  return np.maximum(w, 0.0), _flip_signs(v), solver


def exact(x, n_components, gamma, solver="auto", seed=0):
  """Exact kernel PCA: centred n×n kernel → top eigenpairs → z = U·sqrt(λ)."""
  k = rbf(x, x, gamma)
  col = k.mean(0, dtype=np.float64).astype(np.float32)
  k -= col[None, :]
  k -= col[:, None]
  k += np.float32(col.mean())
  w, v, solver = top_eigh(k, n_components, solver, seed)
  return (v * np.sqrt(w)).astype(np.float32), solver


def _blocks(n, block):
  return [slice(s, min(s + block, n)) for s in range(0, n, block)]


def nystroem(x, n_components, gamma, landmarks=1000, seed=0, block=4096):
  """Nyström feature map on m seeded landmarks, then exact PCA of the centred features.

  φ(x) = k(x, L) · P with P = U_m Λ_m^{-1/2} reproduces the kernel on the span of the
  landmarks. PCA of φ needs only m×m matrices: Cov(φ) = Pᵀ Cov(k(·, L)) P, accumulated
  block by block over k(x, L) (shifted by the first block's mean to keep float32 sums
  exact enough), so memory is O(block·m + m² + n·n_components) whatever n is, and the
  n×m features are never formed.
  """
  n = len(x)
  m = min(landmarks, n)
  rng = np.random.default_rng(seed)
  lm = x[np.sort(rng.choice(n, m, replace=False))]
  w, u = np.linalg.eigh(rbf(lm, lm, gamma).astype(np.float64))
  keep = w > w.max() * 1e-7
  proj = u[:, keep] / np.sqrt(w[keep])
  shift = None
  total = np.zeros(m)
  gram = np.zeros((m, m))
  for s in _blocks(n, block):
    k = rbf(x[s], lm, gamma)
    shift = k.mean(0) if shift is None else shift
    k -= shift
    total += k.sum(0, dtype=np.float64)
    gram += k.T @ k
  mean_k = total / n
  cov = proj.T @ (gram - n * np.outer(mean_k, mean_k)) @ proj
  _, vc, _ = top_eigh(cov, n_components, "dense")
  out = (proj @ vc).astype(np.float32)
  offset = ((mean_k + shift) @ out).astype(np.float32)
  z = np.empty((n, out.shape[1]), np.float32)
  for s in _blocks(n, block):
    z[s] = rbf(x[s], lm, gamma) @ out - offset
  return z, m


def fit_transform(x, n_components=50, gamma=0.0, exact_max_n=6000, landmarks=1000,
                  eigen_solver="auto", seed=0):
  """Kernel PCA of x (n×d) to n_components; returns (z, info) with the method that ran."""
  x = np.asarray(x, np.float32)
  n = len(x)
  gamma_used = float(gamma) if gamma and gamma > 0 else median_gamma(x, seed)
  info = {"gamma": gamma_used, "gamma_rule": "given" if gamma and gamma > 0 else "median"}
  if n <= exact_max_n:
    z, solver = exact(x, min(n_components, n), gamma_used, eigen_solver, seed)
    info.update(method="exact", eigen_solver=solver)
  else:
    z, m = nystroem(x, n_components, gamma_used, landmarks, seed)
    info.update(method="nystroem", landmarks=m)
  info["n_components"] = int(z.shape[1])
  return z, info
