"""Report 004: the MLP autoencoder 784-392-8-392-784 with ReduceLROnPlateau.

Trains configs/mlp.py (50 epochs) on mnist_5k, then draws the loss curve with the
plateau drops, test reconstructions, denoising and a 7→0 latent interpolation.

    python -m experiments.report004_mlp --out=runs/report004
"""
from experiments import common

from ae_jax import data, figures, models  # pylint: disable=g-bad-import-order


def main():
  args, workdir, seconds, config, model, variables, ds = common.train_report_model(
      __doc__, "mlp", "runs/report004", 50, "e.g. mnist for the full TFDS dataset")
  _, val = data.split(ds, config.val_fraction, config.seed)
  seven, zero = (int(next(i for i, y in enumerate(val.labels) if y == c)) for c in (7, 0))
  figures.save_reconstructions(workdir, model, variables, val, range(8))
  figures.save_denoise(workdir, model, variables, val, range(8), 0.3)
  figures.save_interpolation(workdir, model, variables, val, seven, zero, 10)
  lines = common.metrics(workdir)
  lrs = [(m["epoch"], m["learning_rate"]) for m in lines if "learning_rate" in m]
  drops = [f"epoch {e:.0f}: {lr:.0e}" for (e, lr), (_, prev) in zip(lrs[1:], lrs) if lr < prev]
  n_params = models.count_params(variables["params"])
  train_loss, val_mse = common.last(workdir, "train_loss"), common.last(workdir, "eval_mse")
  md = f"""# Report 004: MLP autoencoder (784-392-8-392-784)

| | report 004 | ae_jax |
|---|---|---|
| parameters | 622,504 | {n_params:,} |
| params size (MB) | 2.37 | {models.size_mb(variables['params']):.2f} |
| final train MSE | (plotted, not stated) | {train_loss:.4f} |
| held-out MSE ({len(val)} images) | not reported | {val_mse:.4f} |
| LR drops (ReduceLROnPlateau, patience 5) | "bends around epochs 15 and 40" | {', '.join(drops) or 'none'} |
| training time | | {seconds:.0f} s for {args.epochs} epochs on {ds.name} |

Figures in `{workdir}/plots/`: `loss_curve.png` (dotted: learning rate),
`reconstructions.png` (held-out digits), `denoise.png` (σ = 0.3 noise),
`interpolation.png` (a 7 to a 0 in 10 steps, as in the report).

Reproduce: `python -m experiments.report004_mlp --out={args.out}`
"""
  common.write_results(args.out, md, dict(num_params=n_params, train_mse=train_loss, val_mse=val_mse,
                                          lr_drops=drops, seconds=seconds))


if __name__ == "__main__":
  main()
