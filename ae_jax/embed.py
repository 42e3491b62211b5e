"""Encode a dataset with a trained AE and save the N×D latents.

    python -m ae_jax.embed --workdir=/tmp/rot --dataset=mnist_5k --output=/tmp/z.npy

Library use (bounded memory: fixed-size batches through one jitted apply):

    config, model, variables, step = checkpoint.load_for_inference(workdir)
    z_ND = embed.encode(model, variables, images_NHWC01, config.pixel_range)
"""
import functools
import os

import jax
import numpy as np
from absl import flags

from ae_jax import checkpoint, cli, data, errors


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _apply_batch(model, variables, x01_BHWC, pixel_range, method):
  return model.apply(variables, data.to_range(x01_BHWC, pixel_range), method=method)


def apply_batched(model, variables, x01_NHWC, pixel_range, method="encode", batch_size=512):
  """Runs `method` over N images in batches of `batch_size` (last one padded); numpy out."""
  n = len(x01_NHWC)
  out = []
  for i in range(0, n, batch_size):
    x = np.asarray(x01_NHWC[i:i + batch_size], np.float32)
    pad = batch_size - len(x) if n > batch_size else 0
    if pad:
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    out.append(np.asarray(_apply_batch(model, variables, x, pixel_range, method))[:len(x) - pad])
  return np.concatenate(out)


def encode(model, variables, x01_NHWC, pixel_range, batch_size=512):
  """N images in [0,1] → N×D float32 latents (VAE: the posterior mean)."""
  return apply_batched(model, variables, x01_NHWC, pixel_range, "encode", batch_size)


def check_image_shape(ds, config):
  want = tuple(config.derived.image_shape)
  if ds.image_shape != want:
    raise errors.UserError(f"dataset {ds.name} has images {ds.image_shape}; the model in "
                           f"the workdir expects {want}")


FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Workdir of a trained run.")
flags.DEFINE_string("dataset", None, "Dataset spec (default: the run's dataset).")
flags.DEFINE_string("output", None, "Output .npy file (N×D float32).")
flags.DEFINE_integer("step", None, "Checkpoint step (default: newest).")
flags.mark_flags_as_required(["workdir", "output"])


def main(argv):
  del argv
  if not FLAGS.output.endswith(".npy"):
    raise errors.UserError(f"--output must end in .npy, got {FLAGS.output}")
  config, model, variables, step = checkpoint.load_for_inference(FLAGS.workdir, FLAGS.step)
  ds = data.load(FLAGS.dataset or config.dataset, config.data_dir)
  check_image_shape(ds, config)
  z = encode(model, variables, ds.images, config.pixel_range)
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  np.save(FLAGS.output, z.astype(np.float32))
  print(f"wrote {z.shape[0]}×{z.shape[1]} embeddings of {ds.name} (checkpoint step {step}) "
        f"to {FLAGS.output}", flush=True)


if __name__ == "__main__":
  cli.run(main)
