"""The one checkpoint module: orbax CheckpointManager under `WORKDIR/checkpoints`.

A checkpoint holds the whole `TrainState` pytree (params, batch_stats, optimizer
and plateau-scheduler state, step, rng) plus a JSON `meta` item with the data
iterator position. Restore falls back past unreadable checkpoints.

    mngr = checkpoint.manager(workdir, keep=3)
    checkpoint.save(mngr, state, {'epoch': 2, 'batch_in_epoch': 0})
    state, meta = checkpoint.restore(mngr, abstract_state)          # newest readable
    config, model, variables, step = checkpoint.load_for_inference(workdir)
"""
import json
import os
import sys

import jax
import ml_collections
import orbax.checkpoint as ocp

from ae_jax import errors

SUBDIR = "checkpoints"


def manager(workdir, *, keep=3, keep_period=None, create=True):
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, keep_period=keep_period or None, create=create,
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, SUBDIR)), options=options)


def save(mngr, state, meta):
  step = int(jax.device_get(state.step))
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          meta=ocp.args.JsonSave(meta)), force=True)
  mngr.wait_until_finished()
  return step


def steps(mngr):
  """Finished checkpoint steps, oldest first (half-written temporaries are never listed)."""
  mngr.reload()
  return sorted(mngr.all_steps())


def restore(mngr, abstract_state, step=None):
  """Restores `step` (or the newest readable one); returns (state, meta) or (None, None).

  An unreadable newest checkpoint is skipped with a warning naming it; when every
  checkpoint is unreadable this raises `UserError` and deletes nothing.
  """
  candidates = [step] if step is not None else list(reversed(steps(mngr)))
  if step is not None and step not in steps(mngr):
    raise errors.UserError(f"no checkpoint at step {step} in {mngr.directory}")
  failures = []
  for s in candidates:
    try:
      out = mngr.restore(s, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      return out["state"], dict(out["meta"] or {})
    except Exception as e:  # orbax raises many types for truncated/mismatched files.
      first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
      failures.append(f"step {s}: {first}")
      print(f"warning: cannot read checkpoint {os.path.join(str(mngr.directory), str(s))} "
            f"({first}); trying an older one", file=sys.stderr, flush=True)
  if failures:
    raise errors.UserError(
        f"no readable checkpoint in {mngr.directory} that fits this model ({failures[0]})")
  return None, None


def read_config(workdir):
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise errors.UserError(f"no trained run in {workdir} (missing config.json)")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_for_inference(workdir, step=None):
  """(config, model, variables, step) of a finished or running workdir, for encode/decode."""
  from ae_jax import train_state  # pylint: disable=g-import-not-at-top
  config = read_config(workdir)
  mngr = manager(workdir, create=False) if os.path.isdir(os.path.join(workdir, SUBDIR)) else None
  if mngr is None or not steps(mngr):
    raise errors.UserError(f"no checkpoint in {os.path.join(workdir, SUBDIR)}")
  model, abstract = train_state.abstract_state(config)
  state, _ = restore(mngr, abstract, step)
  return config, model, train_state.variables(state), int(state.step)
