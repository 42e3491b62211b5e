"""Report 001: the convolutional autoencoder and 5 generated samples per class.

Trains configs/conv.py (batch 61, 100 epochs, Adam 1e-3 + L2 1e-5) on mnist_5k and
draws, for each class, an example's latent plus Gaussian noise of scale i/10, i = 1..5.

    python -m experiments.report001_conv --out=runs/report001
"""
from ae_jax import figures, models
from experiments import common

REPORTED_TRAIN_LOSS = 0.03159319325571969


def main():
  args, workdir, seconds, config, model, variables, ds = common.train_report_model(
      __doc__, "conv", "runs/report001", 100, "e.g. fashion_mnist or cifar10 with a network")
  figures.save_generated(workdir, model, variables, ds)
  train_loss, val_mse = common.last(workdir, "train_loss"), common.last(workdir, "eval_mse")
  n_params = models.count_params(variables["params"])
  md = f"""# Report 001: convolutional autoencoder

| | report 001 | ae_jax |
|---|---|---|
| data | wafer maps (3 channels) | {ds.name} {ds.image_shape} |
| optimiser | Adam 1e-3, weight decay 1e-5, batch 61, 100 epochs | same ({config.optimizer}: L2 on the gradient), {args.epochs} epochs |
| parameters | not stated | {n_params:,} |
| reconstruction training loss (MSE) | {REPORTED_TRAIN_LOSS:.4f} | {train_loss:.4f} |
| held-out MSE | not reported | {val_mse:.4f} |
| training time | | {seconds:.0f} s |

`{workdir}/plots/generated.png`: for each class, one example's latent plus Gaussian
noise of scale 0.1 … 0.5 (the report's `add_noise(inputs, i)` with i = 1..5), decoded.
Different data, so the losses compare only loosely.

Reproduce: `python -m experiments.report001_conv --out={args.out}`
"""
  common.write_results(args.out, md, dict(train_mse=train_loss, val_mse=val_mse, num_params=n_params,
                                          reported_train_mse=REPORTED_TRAIN_LOSS, seconds=seconds))


if __name__ == "__main__":
  main()
