"""Figures for any trained workdir: generated samples, interpolation, denoising, reconstructions.

    python -m ae_jax.generate --workdir=/tmp/conv                        # plots/generated.png
    python -m ae_jax.generate --workdir=/tmp/mlp --plots=interpolation,denoise --pair=0,1
"""
from absl import flags

from ae_jax import checkpoint, cli, data, errors, figures, inference

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags (defined when run as a program, not on import)."""
  flags.DEFINE_string("workdir", None, "Workdir of a trained autoencoder run.")
  flags.DEFINE_list("plots", ["generated"], "Any of: generated, interpolation, denoise, reconstructions.")
  flags.DEFINE_string("dataset", None, "Dataset spec (default: the run's dataset).")
  flags.DEFINE_list("pair", ["0", "1"], "Two image indices to interpolate between.")
  flags.DEFINE_list("indices", None, "Image indices for denoise/reconstructions (default: the config's).")
  flags.DEFINE_float("noise_std", 0.3, "Noise for the denoising figure, in [0,1] pixel units.")
  flags.DEFINE_integer("steps", 10, "Interpolation steps.")
  flags.DEFINE_integer("seed", 0, "Noise seed.")
  flags.mark_flags_as_required(["workdir"])

KINDS = ("generated", "interpolation", "denoise", "reconstructions")


def _ints(values, what, n):
  try:
    out = [int(v) for v in values]
  except ValueError as e:
    raise errors.UserError(f"--{what} must be integers, got {values}") from e
  bad = [i for i in out if not 0 <= i < n]
  if bad:
    raise errors.UserError(f"--{what} indices out of range 0..{n - 1}: {bad}")
  return out


def main(argv):
  """Runs the command on the parsed flags."""
  del argv
  unknown = [p for p in FLAGS.plots if p not in KINDS]
  if unknown:
    raise errors.UserError(f"unknown --plots {unknown}; choose from {', '.join(KINDS)}")
  config, model, variables, step = checkpoint.load_for_inference(FLAGS.workdir)
  ds = data.load(FLAGS.dataset or config.dataset, config.data_dir)
  inference.check_image_shape(ds, config)
  indices = _ints(FLAGS.indices or config.reconstruction_indices, "indices", len(ds))
  args = (FLAGS.workdir, model, variables, ds)
  for kind in FLAGS.plots:
    if kind == "generated":
      path = figures.save_generated(*args, seed=FLAGS.seed)
    elif kind == "interpolation":
      i, j = _ints(FLAGS.pair, "pair", len(ds))[:2]
      path = figures.save_interpolation(*args, i, j, FLAGS.steps)
    elif kind == "denoise":
      path = figures.save_denoise(*args, indices, FLAGS.noise_std, FLAGS.seed)
    else:
      path = figures.save_reconstructions(*args, indices)
    print(f"wrote {path} (checkpoint step {step})", flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
