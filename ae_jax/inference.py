"""Batched, jitted inference with a trained autoencoder: encode, embed, decode, reconstruct.

Inputs are [0,1] float or 0–255 uint8 images, outputs [0,1]; the model's own pixel range (`model.pixel_range`)
is applied inside. Fixed-size batches bound memory and keep one compiled program per
method.

    config, model, variables, _ = checkpoint.load_for_inference(workdir)
    z_ND = inference.encode(model, variables, images_NHWC)   # the latent decode reads
    e_NE = inference.embed(model, variables, images_NHWC)    # what is clustered and exported
    e_NE = inference.embed_shared(model, variables, images_NHWC)   # many processes, one share each
    x_NHWC = inference.decode(model, variables, z_ND)
    mse = inference.reconstruction_mse(model, variables, images_NHWC)
"""
import functools

import jax
import numpy as np

from ae_jax import data, errors


@functools.partial(jax.jit, static_argnums=(0, 3))
def _apply(model, variables, arg, method):
  pr = model.pixel_range
  if method == "decode":
    return pr.to_unit(model.apply(variables, arg, method="decode"))
  x = pr.to_model(data.as_unit(arg))  # uint8 images become floats on device
  if method in ("encode", "embed"):  # embed: a model's `embed`, else its `encode`
    return model.apply(variables, x, method=getattr(type(model), method, type(model).encode))
  return pr.to_unit(model.apply(variables, x, train=False)["recon"])


def apply_batched(model, variables, arr, method, batch_size=512):
  """Runs `method` (encode | embed | decode | reconstruct) over N inputs; numpy out."""
  n = len(arr)
  bs = min(batch_size, n)
  out = []
  for i in range(0, n, bs):
    x = np.asarray(arr[i:i + bs])
    x = x if x.dtype == np.uint8 else x.astype(np.float32)
    pad = bs - len(x)
    if pad:
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    out.append(np.asarray(_apply(model, variables, x, method))[:bs - pad])
  return np.concatenate(out)


def _rows(model, variables, x01_NHWC, method, batch_size):
  """`method` (encode | embed) over N images as an N×D float32 array."""
  z = apply_batched(model, variables, x01_NHWC, method, batch_size)
  return np.asarray(z, np.float32).reshape(len(x01_NHWC), -1)


def encode(model, variables, x01_NHWC, batch_size=512):
  """N [0,1] images → N×D float32 latents (VAE: the posterior mean)."""
  return _rows(model, variables, x01_NHWC, "encode", batch_size)


def embed(model, variables, x01_NHWC, batch_size=512):
  """N [0,1] images → N×E float32 embeddings, the representation to cluster: the model's
  `embed` (the residual AE: its latent or feature maps, `arch.embedding`), else its latent."""
  return _rows(model, variables, x01_NHWC, "embed", batch_size)


def embed_shared(model, variables, x01_NHWC, batch_size=512):
  """`embed` by every process of the job, each its contiguous share of the N images (only
  those rows are read), gathered: every process returns all N×E embeddings."""
  n, count, me = len(x01_NHWC), jax.process_count(), jax.process_index()
  if count == 1:
    return embed(model, variables, x01_NHWC, batch_size)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  share = -(-n // count)
  lo, hi = min(n, me * share), min(n, (me + 1) * share)
  first = jax.eval_shape(lambda v, x: _apply(model, v, x, "embed"), variables, x01_NHWC[:1])
  dim = int(np.prod(first.shape[1:]))  # without compiling a batch-1 program
  z = np.zeros((share, dim), np.float32)
  if hi > lo:
    z[:hi - lo] = embed(model, variables, x01_NHWC[lo:hi], batch_size)
  print(f"process {me}: encoded images {lo}..{hi} of {n}", flush=True)
  return np.asarray(multihost_utils.process_allgather(z)).reshape(count * share, dim)[:n]


def decode(model, variables, z_ND, batch_size=512):
  """N latents → N [0,1] images."""
  return apply_batched(model, variables, z_ND, "decode", batch_size)


def reconstruct(model, variables, x01_NHWC, batch_size=512):
  """N [0,1] images → their N [0,1] reconstructions."""
  return apply_batched(model, variables, x01_NHWC, "reconstruct", batch_size)


def reconstruction_mse(model, variables, x01_NHWC, batch_size=1000, chunk=8192):
  """Mean squared reconstruction error in the model's pixel range (the training MSE's scale)."""
  pr = model.pixel_range
  total, count = 0.0, 0
  for s in range(0, len(x01_NHWC), chunk):
    x = data.as_unit(np.asarray(x01_NHWC[s:s + chunk]))
    diff = pr.to_model(reconstruct(model, variables, x, batch_size)) - pr.to_model(x)
    total += float(np.square(diff, dtype=np.float64).sum())
    count += diff.size
  return total / count


def check_image_shape(ds, config):
  """A dataset must have the image shape the run was trained on."""
  want = tuple(config.derived.image_shape)
  if ds.image_shape != want:
    raise errors.UserError(f"dataset {ds.name} has images {ds.image_shape}; the model in "
                           f"the workdir expects {want}")
