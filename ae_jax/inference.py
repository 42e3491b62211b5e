"""Batched, jitted inference with a trained autoencoder: encode, decode, reconstruct.

Inputs and outputs are [0,1] images (the model's pixel range is applied inside);
fixed-size batches bound memory and keep one compiled program per method.

    config, model, variables, _ = checkpoint.load_for_inference(workdir)
    z_ND = inference.encode(model, variables, images_NHWC, config.pixel_range)
    x_NHWC = inference.decode(model, variables, z_ND, config.pixel_range)
"""
import functools

import jax
import numpy as np

from ae_jax import data, errors


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _apply(model, variables, arg, pixel_range, method):
  if method == "decode":
    return data.from_range(model.apply(variables, arg, method="decode"), pixel_range)
  x = data.to_range(arg, pixel_range)
  if method == "encode":
    return model.apply(variables, x, method="encode")
  return data.from_range(model.apply(variables, x, train=False)["recon"], pixel_range)


def apply_batched(model, variables, arr, pixel_range, method, batch_size=512):
  """Runs `method` (encode | decode | reconstruct) over N inputs; numpy out."""
  n = len(arr)
  bs = min(batch_size, n)
  out = []
  for i in range(0, n, bs):
    x = np.asarray(arr[i:i + bs], np.float32)
    pad = bs - len(x)
    if pad:
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    out.append(np.asarray(_apply(model, variables, x, pixel_range, method))[:bs - pad])
  return np.concatenate(out)


def encode(model, variables, x01_NHWC, pixel_range, batch_size=512):
  """N images → N×D float32 latents (VAE: the posterior mean)."""
  return apply_batched(model, variables, x01_NHWC, pixel_range, "encode", batch_size)


def decode(model, variables, z_ND, pixel_range, batch_size=512):
  return apply_batched(model, variables, z_ND, pixel_range, "decode", batch_size)


def reconstruct(model, variables, x01_NHWC, pixel_range, batch_size=512):
  return apply_batched(model, variables, x01_NHWC, pixel_range, "reconstruct", batch_size)


def check_image_shape(ds, config):
  """A dataset must have the image shape the run was trained on."""
  want = tuple(config.derived.image_shape)
  if ds.image_shape != want:
    raise errors.UserError(f"dataset {ds.name} has images {ds.image_shape}; the model in "
                           f"the workdir expects {want}")
