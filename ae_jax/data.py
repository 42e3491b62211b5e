"""Dataset specs → in-memory NHWC arrays → seeded, checkpointable batches on device.

Spec strings (README): `mnist_5k` (embedded, offline), any TFDS catalog name
(`mnist`, `fashion_mnist`, `cifar10`, …) and `npy:IMAGES.npy[,LABELS.npy]`.

    from ae_jax import data
    ds = data.load('mnist_5k')                   # Dataset(images uint8 5000×28×28×1, labels)
    train, val = data.split(ds, val_fraction=0.1, seed=0)
    perm = data.step_permutation(key, step, n=len(train), batch_size=256)   # jit-friendly
    idx_B = data.epoch_batch(perm, step, batch_size=256)

Datasets that fit in memory are read once into arrays and batched on device by a
seeded permutation per epoch, so the iterator position is just the global step
(epoch = step // steps_per_epoch): a per-record host pipeline would be slower than the
jitted step it feeds.
"""
import dataclasses
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ae_jax import errors

EMBEDDED = "mnist_5k"


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A whole dataset in memory: images, optional labels, and where they came from."""
  images: np.ndarray  # N×H×W×C: uint8 0–255 as stored (4× smaller), or float32 in [0, 1]
  labels: Optional[np.ndarray]  # N int32, or None
  name: str
  class_names: Optional[list] = None

  def __len__(self):
    return len(self.images)

  @property
  def image_shape(self):
    """(H, W, C)."""
    return tuple(self.images.shape[1:])

  @property
  def num_classes(self):
    """Number of classes (from class_names, else the largest label + 1), or None."""
    if self.class_names:
      return len(self.class_names)
    return None if self.labels is None else int(self.labels.max()) + 1

  def take(self, idx):
    """The examples at `idx`, as a Dataset."""
    return Dataset(self.images[idx], None if self.labels is None else self.labels[idx],
                   self.name, self.class_names)


def _records_to_arrays(src, name, class_names=None):
  records = src.__getitems__(list(range(len(src))))
  images = np.stack([r["image"] for r in records])
  labels = np.asarray([r["label"] for r in records], np.int32) if "label" in records[0] else None
  return images, labels


def _load_tfds(name, data_dir, split):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    if name == EMBEDDED:
      from ae_jax import mnist5k  # pylint: disable=g-import-not-at-top
      src = mnist5k.data_source(data_dir, split)
      class_names = [str(i) for i in range(10)]
    else:
      builder = tfds.builder(name, data_dir=data_dir or None, file_format="array_record")
      if not builder.is_prepared():
        builder.download_and_prepare()
      src = builder.as_data_source(split=split)
      feat = builder.info.features["label"] if "label" in builder.info.features else None
      class_names = list(feat.names) if feat is not None and hasattr(feat, "names") else None
  except errors.UserError:
    raise
  except Exception as e:  # TFDS raises many types: unknown name, no network, bad split.
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise errors.UserError(f"cannot load TFDS dataset {name!r} (split {split!r}): {msg[:300]}") from e
  images, labels = _records_to_arrays(src, name)
  return images, labels, class_names


def load_npy(path, what):
  """np.load with one clear error for a missing or unreadable file."""
  if not os.path.isfile(path):
    raise errors.UserError(f"{what} file not found: {path}")
  try:
    return np.load(path, allow_pickle=False)
  except Exception as e:
    raise errors.UserError(f"cannot read {what} file {path}: {e}") from e


def as_unit(images):
  """Images as float32 in [0, 1]: uint8 ones / 255, float ones as they are. NumPy or JAX
  arrays; the jitted steps call it on each gathered batch, so data stays uint8 on device."""
  if images.dtype == np.uint8:
    return images.astype(np.float32) / np.float32(255)
  return images


def canonical_images(images, name="images"):
  """uint8 0–255 images as they are, float images → float32 in [0, 1]; NHWC. Validates
  shape and values."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3, 4) or min(images.shape[1:3]) < 4:
    raise errors.UserError(
        f"{name} must be N×H×W or N×H×W×C with C in 1,3,4; got shape {images.shape}")
  if len(images) == 0:
    raise errors.UserError(f"{name} is empty")
  if images.dtype == np.uint8:
    return images
  if not np.issubdtype(images.dtype, np.number) or np.issubdtype(images.dtype, np.complexfloating):
    raise errors.UserError(f"{name} must be uint8 or float, got dtype {images.dtype}")
  images = images.astype(np.float32)
  if not np.isfinite(images).all():
    raise errors.UserError(f"{name} contains NaN or infinite pixels")
  lo, hi = float(images.min()), float(images.max())
  if lo >= 0 and hi <= 1:
    return images
  if lo >= -1 and hi <= 1:
    return (images + 1) / 2
  if lo >= 0 and hi <= 255:
    return images / 255.0
  raise errors.UserError(f"{name} pixel values span [{lo:g}, {hi:g}]; expected [0,1], [-1,1] or 0–255")


def check_labels(labels, n, name="labels"):
  """`labels` as N int32, or UserError when they are not N integers."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or len(labels) != n:
    raise errors.UserError(f"{name} must be a vector of {n} integers; got shape {labels.shape}")
  if not np.issubdtype(labels.dtype, np.integer):
    if not np.issubdtype(labels.dtype, np.floating) or np.any(labels != np.round(labels)):
      raise errors.UserError(f"{name} must be integers, got dtype {labels.dtype}")
  if labels.min() < 0:
    raise errors.UserError(f"{name} must be non-negative class ids")
  return labels.astype(np.int32)


def load(spec: str, data_dir: str = "", split: str = "train") -> Dataset:
  """Turns a dataset spec string into a validated in-memory `Dataset`."""
  if not isinstance(spec, str) or not spec:
    raise errors.UserError("dataset spec is empty")
  if spec.startswith("npy:"):
    paths = spec[4:].split(",")
    if len(paths) > 2 or not paths[0]:
      raise errors.UserError(f"bad npy spec {spec!r}; use npy:IMAGES.npy[,LABELS.npy]")
    images = canonical_images(load_npy(paths[0], "images"), f"images {paths[0]}")
    labels = None
    if len(paths) == 2:
      labels = check_labels(load_npy(paths[1], "labels"), len(images), f"labels {paths[1]}")
    return Dataset(images, labels, spec)
  images, labels, class_names = _load_tfds(spec, data_dir, split)
  return Dataset(canonical_images(images, spec), labels, spec, class_names)


def split(ds: Dataset, val_fraction: float, seed: int):
  """Seeded train/val split of one dataset; val gets round(n · val_fraction) examples."""
  if not 0 <= val_fraction < 1:
    raise errors.UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
  n_val = int(round(len(ds) * val_fraction))
  perm = np.random.default_rng(seed).permutation(len(ds))
  return ds.take(np.sort(perm[n_val:])), ds.take(np.sort(perm[:n_val]))


def epoch_permutation(key, epoch, n):
  """The seeded order of the N training examples in `epoch`."""
  return jax.random.permutation(jax.random.fold_in(key, epoch), n)


def step_permutation(key, step, *, n, batch_size):
  """The permutation of the epoch holding global `step` (drop-remainder epochs)."""
  return epoch_permutation(key, step // (n // batch_size), n)


def epoch_batch(perm, step, batch_size):
  """Indices of the batch at global `step` in its epoch's order `perm` (drop remainder)."""
  steps_per_epoch = perm.shape[0] // batch_size
  return jax.lax.dynamic_slice(perm, ((step % steps_per_epoch) * batch_size,), (batch_size,))


def padded_batches(x, batch_size):
  """Pads N to a multiple of batch_size; returns (x_KB..., mask_KB) for a scan over K batches."""
  n = x.shape[0]
  k = -(-n // batch_size)
  pad = k * batch_size - n
  xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
  mask = jnp.arange(k * batch_size) < n
  return xp.reshape(k, batch_size, *x.shape[1:]), mask.reshape(k, batch_size)
