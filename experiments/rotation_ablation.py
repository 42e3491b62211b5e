"""Does the rotation task earn its place? The main job with and without it, over training seeds.

Trains configs/rotation.py with its own rotation weight β and with β = 0 (everything else
equal), plus report 002's exact recipe (configs/rotation_report002.py), once per training
seed; clusters each run's embedding of the whole dataset with configs/cluster.py once per
clustering seed; reports per variant the mean ± std over training seeds of each run's mean
over clustering seeds. Writes results.md / results.json under --out (runs in --out/NAME/seedS;
a rerun reuses finished runs).

    python -m experiments.rotation_ablation --out=runs/ablation
    python -m experiments.rotation_ablation --out=/tmp/a --train_seeds=0 --cluster_seeds=0
"""
import argparse
import os
import statistics

import configs
from ae_jax import checkpoint, data, inference
from ae_jax.clustering import pipeline
from experiments import common


def variants():
  """name → (config name, overrides): the main job, the main job at β = 0, report 002's recipe."""
  beta = configs.load("rotation").rotation_weight
  return {f"main job (β = {beta:g})": ("rotation", {}),
          "main job, β = 0": ("rotation", {"rotation_weight": 0.0}),
          "report 002 recipe (β = 10, rotated, head on latent)": ("rotation_report002", {})}


def seed_scores(x_ND, labels, num_clusters, cluster_seeds):
  """[{'acc', 'nmi'}] of configs/cluster.py on x_ND, one per clustering seed."""
  out = []
  for seed in cluster_seeds:
    cfg = configs.load("cluster", seed=seed, num_clusters=num_clusters)
    _, m, _ = pipeline.run_pipeline(x_ND, cfg, labels)
    out.append({"acc": m["acc"], "nmi": m["nmi"]})
  return out


def cluster_scores(workdir, ds, num_clusters, cluster_seeds):
  """`seed_scores` of the newest checkpoint's embedding of ds."""
  _, model, variables, _ = checkpoint.load_for_inference(workdir)
  return seed_scores(inference.embed(model, variables, ds.images), ds.labels, num_clusters,
                     cluster_seeds)


def ablate(out, spec, num_clusters, train_seeds, cluster_seeds, overrides=None, which=None):
  """{variant: [{'seed', 'acc', 'nmi', 'train_seconds', 'per_cluster_seed'}]} per training seed,
  for the variants numbered in `which` (default: all)."""
  ds = data.load(spec)
  results = {}
  for i, (name, (cfg_name, over)) in enumerate(variants().items()):
    if which is not None and i not in which:
      continue
    results[name] = []
    for seed in train_seeds:
      workdir = os.path.join(out, f"variant{i}", f"seed{seed}")
      config = configs.load(cfg_name, dataset=spec, seed=seed, **{**(overrides or {}), **over})
      train_s = common.timed_train(config, workdir)
      scores = cluster_scores(workdir, ds, num_clusters, cluster_seeds)
      row = {k: statistics.fmean(s[k] for s in scores) for k in ("acc", "nmi")}
      results[name].append(dict(seed=seed, train_seconds=train_s, per_cluster_seed=scores, **row))
      print(f"{name}, seed {seed}: acc {row['acc']:.4f} nmi {row['nmi']:.4f} "
            f"(trained in {train_s:.0f} s)", flush=True)
  return results


def _mean_std(values):
  return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"


def table(results):
  """Markdown rows: variant, ACC and NMI mean ± std over training seeds, per-seed ACC."""
  lines = ["| variant | ACC | NMI | ACC per training seed | train s |", "|---|---|---|---|---|"]
  for name, rows in results.items():
    per_seed = ", ".join(f"{r['acc']:.4f}" for r in rows)
    lines.append(f"| {name} | {_mean_std([r['acc'] for r in rows])} | "
                 f"{_mean_std([r['nmi'] for r in rows])} | {per_seed} | "
                 f"{statistics.fmean(r['train_seconds'] for r in rows):.0f} |")
  return "\n".join(lines)


def parse_args(doc, out):
  p = argparse.ArgumentParser(description=doc.splitlines()[0])
  p.add_argument("--out", default=out)
  p.add_argument("--train_seeds", default="0,1,2")
  p.add_argument("--cluster_seeds", default="0,1,2")
  p.add_argument("--variants", default="0,1,2", help="which of: 0 main job, 1 β = 0, 2 recipe")
  args = p.parse_args()
  args.variants = [int(s) for s in args.variants.split(",")]
  args.train_seeds = [int(s) for s in args.train_seeds.split(",")]
  args.cluster_seeds = [int(s) for s in args.cluster_seeds.split(",")]
  return args


def main():
  args = parse_args(__doc__, "runs/ablation")
  results = ablate(args.out, "mnist_5k", 10, args.train_seeds, args.cluster_seeds,
                   which=args.variants)
  md = f"""# The rotation task on mnist_5k

All 5,000 images clustered into 10 with `configs/cluster.py`; each cell is the mean ± std over
training seeds {args.train_seeds} of the mean over clustering seeds {args.cluster_seeds}.

{table(results)}

Reproduce: `python -m experiments.rotation_ablation --out={args.out}`
"""
  common.write_results(args.out, md, {"results": results, "train_seeds": args.train_seeds,
                                      "cluster_seeds": args.cluster_seeds})


if __name__ == "__main__":
  main()
