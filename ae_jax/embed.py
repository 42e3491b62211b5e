"""Encode a dataset with a trained AE and save its N×D embeddings (the model's `embed`: its
latent, or the residual AE's feature maps with `arch.embedding="features"`).

    python -m ae_jax.embed --workdir=/tmp/rot --dataset=mnist_5k --output=/tmp/z.npy

Library use: `ae_jax.inference.embed` (fixed-size batches through one jitted apply). In a
job of many processes (`--multihost`) each encodes its share of the images and process 0
writes the file.
"""
import os

import numpy as np
from absl import flags

from ae_jax import checkpoint, cli, data, distributed, errors, inference


FLAGS = flags.FLAGS


def define_flags():
  """The command's flags (defined when run as a program, not on import)."""
  flags.DEFINE_string("workdir", None, "Workdir of a trained run.")
  flags.DEFINE_string("dataset", None, "Dataset spec (default: the run's dataset).")
  flags.DEFINE_string("output", None, "Output .npy file (N×D float32).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: newest).")
  distributed.define_flags()
  flags.mark_flags_as_required(["workdir", "output"])


def main(argv):
  """Encodes the dataset with the run's checkpoint and saves the latents to --output."""
  del argv
  if not FLAGS.output.endswith(".npy"):
    raise errors.UserError(f"--output must end in .npy, got {FLAGS.output}")
  distributed.initialize()
  config, model, variables, step = checkpoint.load_for_inference(FLAGS.workdir, FLAGS.step)
  ds = data.load(FLAGS.dataset or config.dataset, config.data_dir, lazy=True)  # read per batch
  inference.check_image_shape(ds, config)
  z = inference.embed_shared(model, variables, ds.images)
  if not distributed.is_primary():
    return
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  np.save(FLAGS.output, z.astype(np.float32))
  print(f"wrote {z.shape[0]}×{z.shape[1]} embeddings of {ds.name} (checkpoint step {step}) "
        f"to {FLAGS.output}", flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
