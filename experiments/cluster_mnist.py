"""Clustering quality on mnist_5k: raw pixels against each autoencoder's embedding.

Trains every AE config (mlp, mlp_bn, conv, vae, rotation, rotation_report002, mlp_cluster) on
mnist_5k for the epochs in
EPOCHS, encodes all 5,000 images with each (the VAE's posterior mean), and clusters the
raw pixels and every embedding with the same pipeline, `configs/cluster.py`'s kernel
PCA → t-SNE → KMeans, once per clustering seed. Writes results.md / results.json, the
embeddings (`embeddings/NAME.npy`) and the t-SNE maps (`plots/NAME.png`) under --out;
the runs live in --out/NAME. A rerun reuses finished runs (their training time is the
one recorded when they trained).

    python -m experiments.cluster_mnist --out=runs/cluster_mnist
    python -m experiments.cluster_mnist --out=/tmp/c --models=mlp,vae --seeds=0,1,2
"""
import argparse
import os
import statistics
import time

import numpy as np

from experiments import common

import configs  # pylint: disable=g-bad-import-order
from ae_jax import checkpoint, data, inference  # pylint: disable=g-bad-import-order
from ae_jax.clustering import pipeline, plot  # pylint: disable=g-bad-import-order

MODELS = ("mlp", "mlp_bn", "conv", "vae", "rotation", "rotation_report002", "mlp_cluster")
# The configs' own epochs (the main job's min_steps raises its 20 to 58), except conv (100 in
# report 001) and report 002's recipe (30), to keep the script short.
EPOCHS = {"mlp": 50, "mlp_bn": 50, "conv": 30, "vae": 50, "rotation": 20, "rotation_report002": 30,
          "mlp_cluster": 100}
STAGES = ("encode", "kpca", "tsne", "kmeans")


def embed(workdir, images):
  """(N×D embedding of images, encoding seconds) with the newest checkpoint in workdir."""
  _, model, variables, _ = checkpoint.load_for_inference(workdir)
  t = time.perf_counter()
  z = inference.embed(model, variables, images)
  return z, time.perf_counter() - t


def cluster(x, labels, seeds, plot_path):
  """Clusters x once per seed; returns the per-seed metrics (plots the first seed's map)."""
  runs = []
  for seed in seeds:
    clusters, m, xy = pipeline.run_pipeline(x, configs.load("cluster", seed=seed), labels)
    if not runs:
      plot.embedding(plot_path, xy, clusters, labels,
                     f"{os.path.basename(plot_path)[:-4]}: acc={m['acc']:.3f}", fmt="png")
    runs.append({k: m[k] for k in ("acc", "nmi", "ari", "seconds", "dim", "kpca", "tsne")})
  return runs


def row(name, runs, encode_s, train_s, epochs):
  mean = lambda f: statistics.fmean(f(r) for r in runs)  # noqa: E731
  seconds = {s: mean(lambda r, s=s: r["seconds"][s]) for s in STAGES[1:]}
  return {"input": name, "dim": runs[0]["dim"], "acc": mean(lambda r: r["acc"]),
          "acc_min": min(r["acc"] for r in runs), "acc_max": max(r["acc"] for r in runs),
          "nmi": mean(lambda r: r["nmi"]), "ari": mean(lambda r: r["ari"]),
          "seconds": {"encode": encode_s, **seconds}, "train_seconds": train_s,
          "epochs": epochs, "runs": runs}


def markdown(rows, seeds, args, total_s):
  lines = ["| input | dim | acc | NMI | ARI | encode s | kPCA s | t-SNE s | KMeans s | AE train |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    s = r["seconds"]
    spread = f" ({r['acc_min']:.4f}–{r['acc_max']:.4f})" if len(seeds) > 1 else ""
    train = "" if r["epochs"] is None else f"{r['train_seconds']:.0f} s, {r['epochs']} epochs"
    enc = "" if r["epochs"] is None else f"{s['encode']:.2f}"
    lines.append(f"| {r['input']} | {r['dim']} | {r['acc']:.4f}{spread} | {r['nmi']:.4f} | "
                 f"{r['ari']:.4f} | {enc} | {s['kpca']:.2f} | {s['tsne']:.2f} | "
                 f"{s['kmeans']:.2f} | {train} |")
  best = max(rows[1:], key=lambda r: r["acc"], default=rows[0])
  seed_note = (f"mean over clustering seeds {', '.join(map(str, seeds))} (min–max in brackets)"
               if len(seeds) > 1 else f"clustering seed {seeds[0]}")
  return f"""# Clustering mnist_5k: raw pixels vs autoencoder embeddings

All 5,000 images; kernel PCA → t-SNE → KMeans(10) with `configs/cluster.py`'s defaults for
every input; acc is Hungarian-matched, {seed_note}. Stage times are per clustering run.

{chr(10).join(lines)}

Best AE: **{best['input']}**, acc {best['acc']:.4f} (raw pixels {rows[0]['acc']:.4f}).
Whole script: {total_s:.0f} s. t-SNE maps in `{args.out}/plots/`, embeddings in
`{args.out}/embeddings/`.

Reproduce: `python -m experiments.cluster_mnist --out={args.out}`
"""


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="runs/cluster_mnist")
  p.add_argument("--models", default=",".join(MODELS))
  p.add_argument("--seeds", default="0", help="clustering seeds, comma-separated")
  p.add_argument("--epochs", type=int, default=0, help="> 0: the same epochs for every AE")
  args = p.parse_args()
  t0 = time.perf_counter()
  seeds = [int(s) for s in args.seeds.split(",")]
  names = [m for m in args.models.split(",") if m]
  unknown = sorted(set(names) - set(MODELS))
  if unknown:
    p.error(f"unknown models {unknown}; known: {', '.join(MODELS)}")
  for d in ("plots", "embeddings"):
    os.makedirs(os.path.join(args.out, d), exist_ok=True)
  ds = data.load("mnist_5k")
  pixels = data.as_unit(ds.images).reshape(len(ds), -1)
  rows = [row("raw pixels", cluster(pixels, ds.labels, seeds,
                                    os.path.join(args.out, "plots", "raw_pixels.png")),
              0.0, 0.0, None)]
  for name in names:
    epochs = args.epochs or EPOCHS[name]
    workdir = os.path.join(args.out, name)
    train_s = common.timed_train(configs.load(name, num_epochs=epochs), workdir)
    z, encode_s = embed(workdir, ds.images)
    np.save(os.path.join(args.out, "embeddings", f"{name}.npy"), z)
    runs = cluster(z, ds.labels, seeds, os.path.join(args.out, "plots", f"{name}.png"))
    rows.append(row(name, runs, encode_s, train_s, epochs))
    print(f"{name}: acc {rows[-1]['acc']:.4f}", flush=True)
  total_s = time.perf_counter() - t0
  common.write_results(args.out, markdown(rows, seeds, args, total_s),
                       {"rows": rows, "seeds": seeds, "seconds": total_s,
                        "cluster_config": configs.load("cluster").to_dict()})


if __name__ == "__main__":
  main()
