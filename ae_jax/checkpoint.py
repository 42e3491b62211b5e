"""The one checkpoint module: orbax CheckpointManager under `WORKDIR/checkpoints`.

A checkpoint holds the whole `TrainState` pytree (params, batch_stats, optimizer
and plateau-scheduler state, step, rng) plus a JSON `meta` item with the data
iterator position, and a `sha256sums.json` of its files written after orbax has
finished it. Restore checks that manifest and the stored shapes before reading:
a damaged checkpoint is skipped with a warning naming it, a checkpoint that does
not fit the model is an error, and nothing is ever deleted.

    mngr = checkpoint.manager(workdir, keep=3)
    checkpoint.save(mngr, state, {'epoch': 2, 'batch_in_epoch': 0})   # or Saver(mngr).save: async
    found = checkpoint.restore_newest(mngr, abstract_state)   # Restored(state, meta, step, damaged) or None
    checkpoint.set_aside(mngr, found.damaged)                  # -> WORKDIR/checkpoints_corrupt/<step>
    config, model, variables, step = checkpoint.load_for_inference(workdir)

Two ways in: `restore_newest` for training (resume; the caller sets damaged ones aside)
and `load_for_inference` for everything that reads a run (encode, cluster, plot).
"""
import hashlib
import json
import logging
import os
import shutil
import sys
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from ae_jax import distributed, errors

SUBDIR = "checkpoints"
CORRUPT_SUBDIR = "checkpoints_corrupt"
CONFIG = "config.json"
MANIFEST = "sha256sums.json"
_ITEMS = ("state", "meta")


class Restored(NamedTuple):
  """A checkpoint read back: its state, meta, step, and the newer ones skipped as damaged."""
  state: Any
  meta: dict
  step: int
  damaged: tuple  # newer steps that were skipped as unreadable


def manager(workdir, *, keep=3, keep_period=None, create=True, alone=False, async_save=False):
  """The CheckpointManager of WORKDIR/checkpoints. `alone`: this process reads without the
  job's other processes (inference), else all of them take part. `async_save`: saves write
  in a background thread (`Saver`)."""
  solo = {}
  if alone and jax.process_count() > 1:
    me = jax.process_index()
    solo["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"alone{me}")
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, keep_period=keep_period or None, create=create,
      enable_async_checkpointing=async_save, **solo)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, SUBDIR)), options=options)


def step_dir(mngr, step):
  """The directory of the checkpoint at `step`."""
  return os.path.join(str(mngr.directory), str(step))


def save(mngr, state, meta, step=None, *, wait=True):
  """Saves `state` and `meta` (orbax writes a temporary directory and renames it), then,
  with `wait`, the manifest (else `finish` does that later). `step` defaults to `state.step`.

  A failed write (a full disk) raises `errors.SaveFailed` naming the path; the half-written
  directory is removed and the checkpoints saved before stay as they were."""
  step = int(jax.device_get(state.step)) if step is None else int(step)
  try:
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            meta=ocp.args.JsonSave(meta)), force=True)
  except (OSError, ValueError) as e:  # tensorstore reports ENOSPC as ValueError
    raise _save_failed(mngr, step, e) from e
  if wait:
    finish(mngr, step)
  return step


def finish(mngr, step):
  """Waits until the save of `step` is written, then writes its manifest (every process
  takes part); `errors.SaveFailed` as in `save`."""
  path = step_dir(mngr, step)
  try:
    mngr.wait_until_finished()
    if distributed.is_primary():
      with open(os.path.join(path, MANIFEST + ".tmp"), "w") as f:
        json.dump(_file_sums(path), f, indent=0, sort_keys=True)
      os.replace(os.path.join(path, MANIFEST + ".tmp"), os.path.join(path, MANIFEST))
    distributed.barrier(f"manifest {step}")
  except (OSError, ValueError) as e:
    raise _save_failed(mngr, step, e) from e


def _save_failed(mngr, step, e):
  """The `SaveFailed` for a failed save of `step`, once what it left is removed."""
  if distributed.is_primary():
    _discard_unfinished(mngr, step)
  kept = [s for s in steps(mngr) if s != step]
  return errors.SaveFailed(
      f"cannot save the checkpoint {step_dir(mngr, step)}: {_reason(e)}; "
      + (f"the checkpoint at step {kept[-1]} is kept" if kept else "no earlier checkpoint"))


class Saver:
  """Saves that overlap the training calls after them, on a `manager(..., async_save=True)`:
  `save` finishes the save before (its manifest) and starts one; `finish` waits for it.

    saver = checkpoint.Saver(mngr)
    saver.save(state, meta)    # returns once the state is copied; files are written meanwhile
    saver.finish()             # before reading checkpoints, and at the end of the run
  """

  def __init__(self, mngr):
    self.mngr, self.pending = mngr, None

  def save(self, state, meta):
    """Finishes the previous save, then starts saving `state` (SaveFailed as `save`)."""
    self.finish()
    # Own buffers: the next train call donates the state's while the save may still read them.
    state = jax.tree_util.tree_map(lambda x: x.copy(), state)
    self.pending = save(self.mngr, state, meta, wait=False)

  def finish(self):
    """Waits for the save in flight, if any, and writes its manifest."""
    step, self.pending = self.pending, None
    if step is not None:
      finish(self.mngr, step)

  def close(self):
    """`finish` for a run that ends by an error: a failed save is a warning, not a second error."""
    try:
      self.finish()
    except errors.SaveFailed as e:
      _warn(str(e))


def _reason(e):
  """The OS's words for a failed write ('No space left on device'), else the first line."""
  if isinstance(e, OSError) and e.strerror:
    return e.strerror
  text = str(e)
  return "No space left on device" if "No space left" in text else _first_line(e)


def _discard_unfinished(mngr, step):
  """Removes the temporary and the manifest-less directories a failed save of `step` left."""
  root = str(mngr.directory)
  for name in os.listdir(root) if os.path.isdir(root) else ():
    unfinished = name.startswith(f"{step}.orbax-checkpoint-tmp") or (
        name == str(step) and not os.path.isfile(os.path.join(root, name, MANIFEST)))
    if unfinished:
      shutil.rmtree(os.path.join(root, name), ignore_errors=True)
  mngr.reload()


def steps(mngr):
  """Finished checkpoint steps, oldest first (half-written temporaries are never listed)."""
  mngr.reload()
  return sorted(mngr.all_steps())


def _file_sums(path):
  sums = {}
  for item in _ITEMS:
    for root, dirs, files in os.walk(os.path.join(path, item)):
      dirs.sort()
      for name in sorted(files):
        file = os.path.join(root, name)
        with open(file, "rb") as f:
          sums[os.path.relpath(file, path)] = [os.path.getsize(file), hashlib.sha256(f.read()).hexdigest()]
  return sums


def damage(path):
  """What is wrong with the files of the checkpoint in `path` (None: they are as saved, or unlisted)."""
  manifest = os.path.join(path, MANIFEST)
  if not os.path.isfile(manifest):  # saved by an older version, or killed just before writing it
    return None
  try:
    with open(manifest) as f:
      expected = json.load(f)
  except (OSError, ValueError) as e:
    return f"unreadable {MANIFEST}: {e}"
  actual = _file_sums(path)
  for name, (size, digest) in sorted(expected.items()):
    if name not in actual:
      return f"{name} is missing"
    if actual[name][0] != size:
      return f"{name} has {actual[name][0]} bytes, {size} when saved"
    if actual[name][1] != digest:
      return f"{name} does not match its checksum"
  return None


def _key(path):
  return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _leaves(tree):
  return {_key(p): (tuple(x.shape), np.dtype(x.dtype).name)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def describe_misfit(stored, wanted):
  """None if the pytree `stored` has the leaves, shapes and dtypes of `wanted`, else the first
  difference (params first), e.g. 'params.encoder.Dense_1.kernel is (392, 8) float32 in the
  checkpoint, (392, 16) float32 in this model (and 3 more)'."""
  stored, wanted = _leaves(stored), _leaves(wanted)
  diffs = []
  for k in sorted(set(stored) | set(wanted), key=lambda k: (not k.startswith("params"), k)):
    if k not in wanted:
      diffs.append(f"{k} is in the checkpoint but not in this model")
    elif k not in stored:
      diffs.append(f"{k} of this model is not in the checkpoint")
    elif stored[k] != wanted[k]:
      (s, sd), (w, wd) = stored[k], wanted[k]
      diffs.append(f"{k} is {s} {sd} in the checkpoint, {w} {wd} in this model")
  return None if not diffs else diffs[0] + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else "")


def misfit(path, abstract_state):
  """`describe_misfit` of the state stored in the checkpoint at `path` (read from its metadata)."""
  stored = ocp.StandardCheckpointHandler().metadata(epath.Path(path) / "state").tree
  return describe_misfit(stored, abstract_state)


def _first_line(e):
  return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:200]


def _warn(message):
  print(f"warning: {message}", file=sys.stderr, flush=True)


def _read(mngr, step, abstract_state):
  """(state, meta, None), or (None, None, why) for a damaged checkpoint; UserError if it does not fit."""
  path = step_dir(mngr, step)
  why = damage(path)
  if why is None:
    try:
      wrong = misfit(path, abstract_state)
    except Exception as e:  # pylint: disable=broad-except  (unreadable metadata)
      why = _first_line(e)
    else:
      if wrong:
        raise errors.UserError(f"checkpoint {path} does not fit this model: {wrong}")
  if why is None:
    asyncio_log = logging.getLogger("asyncio")  # damaged arrays make orbax's reads log tracebacks
    level = asyncio_log.level
    asyncio_log.setLevel(logging.CRITICAL)
    try:
      out = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_on_this_process(abstract_state)),
          meta=ocp.args.JsonRestore()))
      return out["state"], dict(out["meta"] or {}), None
    except Exception as e:  # pylint: disable=broad-except  (orbax raises many types)
      why = _first_line(e)
    finally:
      asyncio_log.setLevel(level)
  return None, None, why


def _on_this_process(tree):
  """Shape-only leaves placed on this process's first device, whatever topology (hosts,
  devices) saved the checkpoint; the caller replicates them onto its mesh."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), tree)


def read_meta(mngr, step):
  """The JSON `meta` item of the checkpoint at `step`."""
  return dict(mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"] or {})


def restore_newest(mngr, abstract_state, step=None):
  """The newest readable checkpoint (or exactly `step`) as `Restored`, or None when there is none.

  A damaged checkpoint is skipped with a warning naming it; when every one is damaged
  this raises `UserError`, and it deletes nothing.
  """
  available = steps(mngr)
  if step is not None and step not in available:
    raise errors.UserError(f"no checkpoint at step {step} in {mngr.directory}")
  candidates = [step] if step is not None else available[::-1]
  damaged = []
  for i, s in enumerate(candidates):
    state, meta, why = _read(mngr, s, abstract_state)
    if why is None:
      return Restored(state, meta, s, tuple(damaged))
    damaged.append(s)
    more = "; trying an older one" if i + 1 < len(candidates) else ""
    _warn(f"checkpoint {step_dir(mngr, s)} is unreadable ({why}){more}")
  if damaged:
    raise errors.UserError(f"no readable checkpoint in {mngr.directory} (damaged: step "
                           f"{', '.join(map(str, damaged))}; see the warnings); nothing was changed")
  return None


def set_aside(mngr, damaged):
  """Moves damaged checkpoints to WORKDIR/checkpoints_corrupt/ (kept, never deleted), freeing their steps."""
  root = os.path.join(os.path.dirname(str(mngr.directory)), CORRUPT_SUBDIR)
  for s in damaged if distributed.is_primary() else ():
    dest, n = os.path.join(root, str(s)), 0
    while os.path.exists(dest):
      n += 1
      dest = os.path.join(root, f"{s}.{n}")
    os.makedirs(root, exist_ok=True)
    shutil.move(step_dir(mngr, s), dest)
    _warn(f"moved the unreadable checkpoint {step_dir(mngr, s)} to {dest}")
  distributed.barrier("set aside")
  mngr.reload()


def read_config_dict(workdir):
  """The dict in WORKDIR/config.json, or None when there is none; UserError when it is unreadable."""
  path = os.path.join(workdir, CONFIG)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise errors.UserError(f"cannot read {path} ({e}); repair it, or use another --workdir") from e


def read_config(workdir):
  """WORKDIR/config.json as a ConfigDict; UserError when there is no trained run."""
  config = read_config_dict(workdir)
  if config is None:
    raise errors.UserError(f"no trained run in {workdir} (missing {CONFIG})")
  return ml_collections.ConfigDict(config)


def load_for_inference(workdir, step=None):
  """(config, model, variables, step) of a run's newest readable checkpoint (or `step`),
  read-only: for encode/decode, clustering and figures."""
  from ae_jax import train_state  # pylint: disable=g-import-not-at-top
  config = read_config(workdir)
  mngr = (manager(workdir, create=False, alone=True)
          if os.path.isdir(os.path.join(workdir, SUBDIR)) else None)
  if mngr is None or not steps(mngr):
    raise errors.UserError(f"no checkpoint in {os.path.join(workdir, SUBDIR)}")
  model, abstract = train_state.abstract_state(config)
  found = restore_newest(mngr, abstract, step)
  return config, model, train_state.variables(found.state), found.step
