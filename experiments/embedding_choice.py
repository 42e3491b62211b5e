"""Which readout of a trained main job clusters best: the latent z or the encoder's feature maps.

Embeds a run's dataset (or --dataset) three ways (`arch.embedding`: 'latent' = z, 'features' =
the flattened maps that feed z and the rotation head, 'both' = the two side by side), takes
raw pixels in [0, 1] beside them, and clusters each with configs/cluster.py once per
clustering seed. Prints one row each: the mean ACC/NMI over the seeds and the per-seed ACC.

    python -m experiments.embedding_choice --workdir=runs/rotation
    python -m experiments.embedding_choice --workdir=runs/x --dataset=npy:X.npy,y.npy
"""
import argparse
import statistics

from ae_jax import checkpoint, data, inference
from experiments import common, rotation_ablation


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="a trained run of configs/rotation.py")
  p.add_argument("--dataset", default="", help="dataset spec (default: the run's)")
  p.add_argument("--seeds", default="0,1,2", help="clustering seeds, comma-separated")
  p.add_argument("--readouts", default="raw,latent,features,both", help="which rows")
  args = p.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  config, model, variables, step = checkpoint.load_for_inference(args.workdir)
  ds = data.load(args.dataset or config.dataset, config.data_dir)
  k = int(ds.labels.max()) + 1
  readouts = args.readouts.split(",")
  inputs = {"raw pixels": data.as_unit(ds.images).reshape(len(ds.images), -1)} if (
      "raw" in readouts) else {}
  for readout in ("latent", "features", "both"):
    if readout in readouts:
      inputs[f"embedding={readout}"] = inference.embed(model.clone(embedding=readout), variables,
                                                       ds.images)
  print(f"{common.machine()}\n{args.workdir} (step {step}), {ds.name}: {len(ds.images)} images, "
        f"{k} clusters, clustering seeds {seeds}\n")
  print("| input | dim | ACC | NMI | ACC per clustering seed |\n|---|---|---|---|---|")
  for name, x in inputs.items():
    runs = rotation_ablation.seed_scores(x, ds.labels, k, seeds)
    acc, nmi = (statistics.fmean(r[key] for r in runs) for key in ("acc", "nmi"))
    per_seed = ", ".join(f"{r['acc']:.4f}" for r in runs)
    print(f"| {name} | {x.shape[1]} | {acc:.4f} | {nmi:.4f} | {per_seed} |", flush=True)


if __name__ == "__main__":
  main()
