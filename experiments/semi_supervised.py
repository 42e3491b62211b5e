"""Reports 000 and 003: 100 labels, classifier from scratch vs AE-pretrained encoder.

Labelled images come from a fixed stratified pool of 1,000 mnist_5k images; each
AE is pretrained once on the other 4,000 (labels unused). For each seed: a
stratified 100/100/100 split of the pool, then every mode (scratch,
frozen probe, fine-tuned) with augmentation off/on, for report 000's and 003's MLP
encoders; and the main job's residual encoder (rotation AE), fine-tuned and from scratch also
with self-training (confident pseudo-labels on the unlabelled images), so pretraining is
compared with the same recipe on both sides. Writes results.md/results.json.

    python -m experiments.semi_supervised --out=runs/semi --seeds=5
"""
import argparse
import json
import os
import time

import numpy as np

import configs
from ae_jax import data, train, transfer
from configs import transfer as transfer_config

REPORTED = {"000": "scratch 52% → pretrained 71% (test)", "003": "≈70% → ≈80%"}
POOL = 1000  # labelled images come from a fixed stratified pool; the AE sees the other 4,000
ALL_MODES = [(m, aug, 0) for m in transfer.MODES for aug in (False, True)]
FAMILIES = {  # family → (modes as (mode, augment, self-training rounds))
    "000": ALL_MODES,
    "003": ALL_MODES,
    "rotation": [("scratch", True, 0), ("scratch", True, 4), ("frozen", True, 0),
                 ("finetune", True, 0), ("finetune", True, 2), ("finetune", True, 4)],
}


def ae_config(family, dataset, epochs):
  """The AE whose encoder is the family's classifier encoder (denoising for the MLPs)."""
  if family == "rotation":
    return configs.load("rotation", dataset=dataset, num_epochs=epochs, val_fraction=0.05,
                        log_every_steps=10_000)
  return configs.load("mlp", arch=transfer_config.get_config(family).arch, dataset=dataset,
                      num_epochs=epochs, batch_size=64, noise_std=0.2, log_every_steps=10_000)


def pretrain(family, root, ds, epochs):
  """One AE per family on the images outside the labelled pool (no labels, no test images)."""
  os.makedirs(root, exist_ok=True)
  unl = os.path.join(root, "unlabelled.npy")
  if not os.path.exists(unl):
    split = transfer.labelled_split(ds.labels, 100, 0, pool=POOL)
    np.save(unl, np.round(data.as_unit(ds.images[split["unlabelled"]]) * 255).astype(np.uint8))
  ae_dir = os.path.join(root, f"ae_{family}")
  train.train_and_evaluate(ae_config(family, f"npy:{unl}", epochs), ae_dir)
  return ae_dir


def run_family(family, seed, root, ae_dir, clf_epochs):
  rows = []
  for mode, aug, rounds in FAMILIES[family]:
    c = transfer_config.get_config(family)
    c.update(dict(mode=mode, augment=aug, seed=seed, num_epochs=clf_epochs, labelled_pool=POOL,
                  pretrained_workdir=ae_dir if mode != "scratch" else ""))
    c.self_train.rounds = rounds
    name = f"{family}_{mode}_aug{int(aug)}_st{rounds}"
    workdir = os.path.join(root, f"seed{seed}", name)
    train.train_and_evaluate(c, workdir)
    with open(os.path.join(workdir, transfer.RESULT)) as f:
      r = json.load(f)
    rows.append(dict(r, family=family, seed=seed, augment=aug, self_train=rounds))
  return rows


def summarise(rows):
  groups = {}
  for r in rows:
    groups.setdefault((r["family"], r["mode"], r["augment"], r["self_train"]), []).append(r)
  out = []
  for (family, mode, aug, rounds), rs in groups.items():
    val, test = np.array([r["val_acc"] for r in rs]), np.array([r["test_acc"] for r in rs])
    out.append(dict(family=family, mode=mode, augment=aug, self_train=rounds, seeds=len(rs),
                    val_mean=val.mean(), val_std=val.std(), test_mean=test.mean(), test_std=test.std(),
                    num_params=rs[0]["num_params"], size_mb=rs[0]["size_mb"]))
  return out


def markdown(summary, seconds, args):
  lines = ["# Semi-supervised MNIST with 100 labels (reports 000 and 003)", "",
           f"mnist_5k. Per seed, stratified 100 train / 100 val / 100 test labels drawn from a "
           f"fixed pool of {POOL}; each AE is pretrained once on the other {5000 - POOL} images "
           f"without labels (so it never sees a labelled or test image); {args.seeds} seeds; "
           f"best epoch by val accuracy. Total {seconds:.0f} s.", "",
           "| encoder (report) | mode | augment | self-training | val acc | test acc | params | "
           "size MB (< 20?) | report |",
           "|---|---|---|---|---|---|---|---|---|"]
  for s in summary:
    lines.append(f"| {s['family']} | {s['mode']} | {'on' if s['augment'] else 'off'} | "
                 f"{s['self_train'] or 'no'} {'rounds' if s['self_train'] else ''} | "
                 f"{s['val_mean']:.3f} ± {s['val_std']:.3f} | {s['test_mean']:.3f} ± {s['test_std']:.3f} | "
                 f"{s['num_params']:,} | {s['size_mb']:.2f} ({'yes' if s['size_mb'] < 20 else 'no'}) | "
                 f"{REPORTED.get(s['family'], '')} |")
  lines += ["", f"Reproduce: `python -m experiments.semi_supervised --out={args.out} --seeds={args.seeds}`"]
  return "\n".join(lines) + "\n"


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="runs/semi")
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--families", default="000,003,rotation")
  p.add_argument("--ae_epochs", type=int, default=30)
  p.add_argument("--clf_epochs", type=int, default=100)
  args = p.parse_args()
  t0 = time.perf_counter()
  ds = data.load("mnist_5k")
  rows = []
  families = args.families.split(",")
  ae_dirs = {f: pretrain(f, args.out, ds, args.ae_epochs) for f in families}
  for seed in range(args.seeds):
    for family in families:
      rows += run_family(family, seed, args.out, ae_dirs[family], args.clf_epochs)
  summary = summarise(rows)
  seconds = time.perf_counter() - t0
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(dict(rows=rows, summary=summary, seconds=seconds), f, indent=2)
  md = markdown(summary, seconds, args)
  with open(os.path.join(args.out, "results.md"), "w") as f:
    f.write(md)
  print(md)


if __name__ == "__main__":
  main()
