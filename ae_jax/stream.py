"""The streaming input path: each step's batch read from disk by grain, for training sets
that do not fit on device.

    if stream.chosen(config, train_ds):                    # --config.stream, else by size
      batches = stream.Batches(config, train_ds, mesh, start_step=0, total=1000, call_steps=8)
      x_KB = batches.next_call(8)                          # (8, B, H, W, C) uint8, sharded on B
      meta = {"data_iterator": batches.state()}            # saved in every checkpoint

The order is the in-memory path's: step s reads the rows `data.step_permutation` gives it,
so a streamed run computes what an in-memory run does and the two resume each other's
checkpoints. grain reads the batches ahead in threads (`config.stream_threads`) from a
`data.Rows` source (a memory-mapped .npy or a TFDS data source); its iterator state goes
into every checkpoint's meta and is restored on resume. In a job of many processes each
one reads only its own rows of every global batch.
"""
import functools
import os
import sys

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from ae_jax import data, errors, train_state

STATE_KEY = "data_iterator"


def device_budget_bytes(config):
  """Bytes of training images the in-memory path may put on each device:
  `config.stream_budget_mb`, or by default a quarter of one device's memory (a CPU: of RAM)."""
  if config.stream_budget_mb:
    return int(config.stream_budget_mb * 2**20)
  device = jax.local_devices()[0]
  limit = (device.memory_stats() or {}).get("bytes_limit") if device.platform != "cpu" else None
  if not limit:
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return int(limit) // 4


def chosen(config, train_ds):
  """Whether the run streams: `config.stream` when set, else in a job of many processes (each
  reads only its rows of every batch) or when the training images exceed
  `device_budget_bytes` (said on stdout)."""
  if config.stream is not None:
    return bool(config.stream)
  if jax.process_count() > 1:
    print(f"streaming the training set from disk: each of the {jax.process_count()} processes "
          f"reads its own rows of every batch", flush=True)
    return True
  size = len(train_ds) * int(np.prod(train_ds.image_shape)) * np.dtype(train_ds.images.dtype).itemsize
  budget = device_budget_bytes(config)
  if size > budget:
    print(f"streaming the training set from disk: its {size / 2**20:,.0f} MB exceed the "
          f"{budget / 2**20:,.0f} MB device budget (config.stream_budget_mb)", flush=True)
  return size > budget


def check(config):
  """UserError for a streaming setting no run can take."""
  if config.stream and config.get("task", "autoencode") != "autoencode":
    raise errors.UserError("config.stream is for autoencoders; a classifier's labelled sets "
                           "are small and train in memory")
  if not isinstance(config.stream_threads, int) or config.stream_threads < 1:
    raise errors.UserError(f"config.stream_threads must be an integer >= 1, got "
                           f"{config.stream_threads!r}")


def _local_rows(batch_size):
  """The slice of every global batch this process's devices hold (mesh order = process order)."""
  per = batch_size // jax.process_count()
  return slice(jax.process_index() * per, (jax.process_index() + 1) * per)


class _StepBatch:
  """step → this process's rows of that step's batch, as uint8/float NHWC (a grain map)."""

  def __init__(self, config, ds):
    self.ds, self.batch = ds, config.batch_size
    self.steps_per_epoch = len(ds) // config.batch_size
    self.rows = _local_rows(config.batch_size)
    _, data_key, _ = train_state.seeds(config.seed)
    self.order = jax.jit(functools.partial(data.epoch_permutation, data_key, n=len(ds)))

  @functools.lru_cache(maxsize=2)
  def epoch_order(self, epoch):
    return np.asarray(self.order(epoch))

  def __call__(self, step):
    perm = self.epoch_order(step // self.steps_per_epoch)
    start = (step % self.steps_per_epoch) * self.batch
    return self.ds.images[perm[start:start + self.batch][self.rows]]


class Batches:
  """The training batches from `start_step` on, read ahead by grain, handed out per call."""

  def __init__(self, config, ds, mesh, *, start_step, total, call_steps, state=None):
    self.mesh, self.call_steps = mesh, call_steps
    self.sharding = NamedSharding(mesh, P(None, "data"))
    self.global_shape = (call_steps, config.batch_size, *ds.image_shape)
    read = grain.ReadOptions(num_threads=config.stream_threads,
                             prefetch_buffer_size=max(2 * call_steps, 8))
    self.iterator = iter(grain.MapDataset.range(total).map(_StepBatch(config, ds))
                         .to_iter_dataset(read))
    if state is not None:
      self.iterator.set_state(state)
    else:
      grain.experimental.set_next_index(self.iterator, start_step)
    if self.next_step != start_step:
      print(f"warning: the checkpoint's data iterator is at step {self.next_step}, the state at "
            f"{start_step}; reading from step {start_step}", file=sys.stderr, flush=True)
      grain.experimental.set_next_index(self.iterator, start_step)

  @property
  def next_step(self):
    """The step whose batch comes next."""
    return grain.experimental.get_next_index(self.iterator)

  def state(self):
    """grain's iterator state (JSON-able), for the checkpoint's meta."""
    return self.iterator.get_state()

  def next_call(self, k):
    """The next `k` steps' batches as one (call_steps, B, H, W, C) device array (rows past
    `k` are zeros, so every call has one shape and one compiled program)."""
    local = [next(self.iterator) for _ in range(k)]
    pad = [np.zeros_like(local[0])] * (self.call_steps - k)
    x = np.stack(local + pad)
    if jax.process_count() == 1:
      return jax.device_put(x, self.sharding)
    return jax.make_array_from_process_local_data(self.sharding, x, self.global_shape)
