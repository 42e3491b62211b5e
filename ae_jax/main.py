"""Train an autoencoder from a config file.

    python -m ae_jax.main --config=configs/rotation.py --workdir=/tmp/rot
    python -m ae_jax.main --config=configs/mlp.py --workdir=/tmp/mlp --config.num_epochs=2

Rerunning the same command resumes from the newest checkpoint in --workdir. Many hosts:
`--multihost` (see ae_jax/distributed.py).
"""
from absl import flags
from ml_collections import config_flags

from ae_jax import cli, distributed

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags (defined when run as a program, not on import)."""
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
  distributed.define_flags()
  config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  """Runs the command on the parsed flags."""
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  from ae_jax import train  # pylint: disable=g-import-not-at-top
  distributed.initialize()
  print(f"JAX {jax.__version__} on {jax.device_count()} {jax.devices()[0].platform} device(s)"
        + (f", process {jax.process_index()} of {jax.process_count()}" if jax.process_count() > 1 else ""),
        flush=True)
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
