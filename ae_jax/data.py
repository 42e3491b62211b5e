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
jitted step it feeds. `load(..., lazy=True)` opens a dataset without reading its images:
they are `Rows`, read by index from a .npy file or a TFDS data source (the streaming path,
ae_jax/stream.py).
"""
import dataclasses
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ae_jax import errors

EMBEDDED = "mnist_5k"


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A whole dataset in memory: images, optional labels, and where they came from."""
  images: Any  # N×H×W×C ndarray or lazy `Rows`: uint8 0–255 as stored, or float32 in [0, 1]
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
    """The examples at `idx`, as a Dataset (lazy images stay lazy: a view)."""
    images = self.images.view(idx) if isinstance(self.images, Rows) else self.images[idx]
    return Dataset(images, None if self.labels is None else self.labels[idx], self.name,
                   self.class_names)

  def in_memory(self):
    """The dataset with its images read into one array."""
    if not isinstance(self.images, Rows):
      return self
    return dataclasses.replace(self, images=self.images[np.arange(len(self))])


class Rows:
  """Images N×H×W×C read by row index, `rows[idx]` → ndarray, never all at once: a .npy
  file (read with pread, so what was read leaves no pages resident) or a TFDS data source.
  `view(idx)` is a subset, still lazy."""

  def __init__(self, read, shape, dtype, index=None):
    self._read, self.shape, self.dtype = read, tuple(shape), np.dtype(dtype)
    self._index = index  # the source's rows this view holds (None: all of them)

  @property
  def ndim(self):
    """Number of axes, as an array's."""
    return len(self.shape)

  def __len__(self):
    return self.shape[0]

  def _source_rows(self, idx):
    idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, np.int64)
    return idx if self._index is None else self._index[idx]

  def view(self, idx):
    """The rows at `idx` as another lazy `Rows`."""
    rows = self._source_rows(idx)
    return Rows(self._read, (len(rows), *self.shape[1:]), self.dtype, rows)

  def __getitem__(self, idx):
    rows = self._source_rows(idx)
    if rows.ndim == 0:
      return self[rows[None]][0]
    order = np.argsort(rows, kind="stable")  # read in file order, hand back in the asked one
    out = np.empty((len(rows), *self.shape[1:]), self.dtype)
    for lo in range(0, len(rows), _CHUNK):
      out[order[lo:lo + _CHUNK]] = self._read(rows[order[lo:lo + _CHUNK]])
    return out


_CHUNK = 8192  # rows read at once: bounds the memory a whole-set read takes on top of its result


def _tfds_rows(src):
  """(Rows over a TFDS data source's images, its labels or None), read a chunk at a time."""
  def read(rows):
    return np.stack([r["image"] for r in src.__getitems__([int(i) for i in rows])])

  first = src.__getitems__([0])[0]
  has_labels = "label" in first
  labels = []
  for lo in range(0, len(src) if has_labels else 0, _CHUNK):
    labels += [r["label"] for r in src.__getitems__(list(range(lo, min(lo + _CHUNK, len(src)))))]
  image = np.asarray(first["image"])
  return (Rows(read, (len(src), *image.shape), image.dtype),
          np.asarray(labels, np.int32) if has_labels else None)


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
  images, labels = _tfds_rows(src)
  return images, labels, class_names


def load_npy(path, what, mmap_mode=None):
  """np.load with one clear error for a missing or unreadable file."""
  if not os.path.isfile(path):
    raise errors.UserError(f"{what} file not found: {path}")
  try:
    return np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
  except Exception as e:
    raise errors.UserError(f"cannot read {what} file {path}: {e}") from e


def as_unit(images):
  """Images as float32 in [0, 1]: uint8 ones / 255, float ones as they are. NumPy or JAX
  arrays; the jitted steps call it on each gathered batch, so data stays uint8 on device."""
  if images.dtype == np.uint8:
    return images.astype(np.float32) / np.float32(255)
  return images


def _check_shape(shape, name):
  if len(shape) != 4 or shape[-1] not in (1, 3, 4) or min(shape[1:3]) < 4:
    raise errors.UserError(
        f"{name} must be N×H×W or N×H×W×C with C in 1,3,4; got shape {shape}")
  if shape[0] == 0:
    raise errors.UserError(f"{name} is empty")


def _check_dtype(dtype, name):
  if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
    raise errors.UserError(f"{name} must be uint8 or float, got dtype {dtype}")


def _to_unit(chunks, name):
  """The map taking stored non-uint8 pixels to float32 in [0, 1], chosen by their range over
  `chunks` (float32 arrays, read in turn); UserError for NaN or a range no map takes."""
  lo, hi = np.inf, -np.inf
  for chunk in chunks:
    if not np.isfinite(chunk).all():
      raise errors.UserError(f"{name} contains NaN or infinite pixels")
    lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
  if lo >= 0 and hi <= 1:
    return lambda x: x.astype(np.float32, copy=False)
  if lo >= -1 and hi <= 1:
    return lambda x: (x.astype(np.float32, copy=False) + 1) / 2
  if lo >= 0 and hi <= 255:
    return lambda x: x.astype(np.float32, copy=False) / 255.0
  raise errors.UserError(f"{name} pixel values span [{lo:g}, {hi:g}]; expected [0,1], [-1,1] or 0–255")


def canonical_images(images, name="images"):
  """uint8 0–255 images as they are, float images → float32 in [0, 1]; NHWC. Validates
  shape and values."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  _check_shape(images.shape, name)
  if images.dtype == np.uint8:
    return images
  _check_dtype(images.dtype, name)
  images = images.astype(np.float32)
  return _to_unit([images], name)(images)


def _npy_reader(path, mm):
  """read(sorted rows) → those rows of the .npy at `path` (`mm`: its memory map, for the
  layout), read with pread, a run of consecutive rows at a time: the file is never mapped,
  so what was read leaves no pages in this process."""
  if mm.dtype.hasobject or not mm.flags.c_contiguous:  # not a plain C-order array
    return lambda rows: np.asarray(np.load(path, mmap_mode="r")[rows])
  offset, row = mm.offset, int(np.prod(mm.shape[1:])) * mm.dtype.itemsize
  dtype, shape = mm.dtype, mm.shape[1:]

  def read(rows):
    out = np.empty((len(rows), row), np.uint8)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    with open(path, "rb", buffering=0) as f:
      for lo, hi in zip([0, *breaks], [*breaks, len(rows)]):
        want, view = (hi - lo) * row, memoryview(out[lo:hi]).cast("B")
        got = os.preadv(f.fileno(), [view], offset + int(rows[lo]) * row)
        if got != want:
          raise errors.UserError(f"{path} is shorter than its header says ({got} of {want} bytes "
                                 f"at row {rows[lo]})")
    return out.view(dtype).reshape(len(rows), *shape)

  return read


def _npy_rows(path, name):
  """`Rows` over the images of a .npy file, checked and scaled as `canonical_images` does
  (float files: one pass over them, a chunk at a time)."""
  mm = load_npy(path, "images", mmap_mode="r")
  shape = mm.shape + (1,) if mm.ndim == 3 else mm.shape
  _check_shape(shape, name)
  raw = _npy_reader(path, mm)
  n = len(mm)
  if mm.dtype == np.uint8:
    convert, dtype = (lambda x: x), np.uint8
  else:
    _check_dtype(mm.dtype, name)
    chunks = (raw(np.arange(i, min(i + _CHUNK, n))).astype(np.float32) for i in range(0, n, _CHUNK))
    convert, dtype = _to_unit(chunks, name), np.float32
  del mm
  return Rows(lambda rows: convert(raw(rows).reshape(len(rows), *shape[1:])), shape, dtype)


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


def load(spec: str, data_dir: str = "", split: str = "train", lazy: bool = False) -> Dataset:
  """Turns a dataset spec string into a validated `Dataset`: in memory, or with `lazy` its
  images as `Rows` read from disk when asked for."""
  if not isinstance(spec, str) or not spec:
    raise errors.UserError("dataset spec is empty")
  if spec.startswith("npy:"):
    paths = spec[4:].split(",")
    if len(paths) > 2 or not paths[0]:
      raise errors.UserError(f"bad npy spec {spec!r}; use npy:IMAGES.npy[,LABELS.npy]")
    images = _npy_rows(paths[0], f"images {paths[0]}")
    labels = None
    if len(paths) == 2:
      labels = check_labels(load_npy(paths[1], "labels"), len(images), f"labels {paths[1]}")
    ds = Dataset(images, labels, spec)
  else:
    images, labels, class_names = _load_tfds(spec, data_dir, split)
    _check_shape(images.shape, f"TFDS dataset {spec!r}")
    if images.dtype != np.uint8:
      raise errors.UserError(f"TFDS dataset {spec!r} stores {images.dtype} images; ae_jax reads uint8")
    ds = Dataset(images, labels, spec, class_names)
  return ds if lazy else ds.in_memory()


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
