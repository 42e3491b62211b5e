"""A training run's `config.json`: refuse another config's run, write it atomically.

`check` only reads, so input it refuses leaves the workdir byte-for-byte unchanged.

    from ae_jax import run_config
    from configs import mlp
    run_config.check(mlp.get_config(), '/tmp/mlp')   # UserError for another config's run
    run_config.write('/tmp/mlp', mlp.get_config(), derived={'steps_per_epoch': 140})
"""
import json
import os
import re
import shutil

from ae_jax import checkpoint, distributed, errors, models, report, transfer


# Keys (top-level sections or full dotted names) that may change between runs on one
# workdir: extending or re-plotting a run, how the same gradients are computed, or what
# clustering reads out of the trained model (arch.embedding).
RESUMABLE_KEYS = ("num_epochs", "min_steps", "log_every_steps", "steps_per_call", "overwrite",
                  "eval_batch_size", "eval", "reconstruction_indices", "checkpoint", "init_from",
                  "arch.loop_safe_conv", "arch.embedding", "stream", "stream_budget_mb",
                  "stream_threads")


# Keys added to the configs after runs were made, with the value that gives the behaviour
# of runs made before them: a workdir whose config.json lacks one is read with this value,
# so existing runs stay resumable.
ADDED_KEYS = {"pose_augment.max_degrees": 0.0, "pose_augment.max_shift": 0.0,
              "rotation_recon": "rotated"}


def _flatten(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _identity(config_dict):
  """The flattened keys that define a run (the resumable ones and `derived` left out)."""
  return {k: v for k, v in _flatten(config_dict).items()
          if k not in RESUMABLE_KEYS and k.split(".")[0] not in RESUMABLE_KEYS + ("derived",)}


def differences(old, new):
  """['arch.latent_dim (8 in the workdir, 4 now)', ...] between two config dicts."""
  old, new = ({**ADDED_KEYS, **_identity(c)} for c in (old, new))
  for c in (old, new):  # a model's old name is the same model
    if "model" in c:
      c["model"] = models.ALIASES.get(c["model"], c["model"])
  show = lambda d, k: json.dumps(d[k]) if k in d else "absent"
  return [f"{k} ({show(old, k)} in the workdir, {show(new, k)} now)"
          for k in sorted(set(old) | set(new)) if old.get(k, ()) != new.get(k, ())]


def check_writable(path):
  """UserError unless `path` is, or can be made, a writable directory."""
  p = os.path.abspath(path)
  while not os.path.exists(p):
    p = os.path.dirname(p)
  if not os.path.isdir(p):
    raise errors.UserError(f"cannot use --workdir={path}: {p} is a file, not a directory")
  if not os.access(p, os.W_OK | os.X_OK):
    raise errors.UserError(f"cannot write to --workdir={path}: {p} is not writable")


def check(config, path):
  """Accepts `path` for this config without writing anything. Returns None, or (with
  `config.overwrite`) the differences from the other config's run it holds, to be wiped.

  A workdir holding a run of another config is refused unless `config.overwrite`.
  """
  check_writable(path)
  old = checkpoint.read_config_dict(path)
  diff = differences(old, json.loads(config.to_json())) if old is not None else []
  if not diff:
    return None
  listed = "; ".join(diff[:3]) + ("; …" if len(diff) > 3 else "")
  if not config.overwrite:
    raise errors.UserError(f"{path} holds a run of a different config (differs in: {listed}); "
                           "use another --workdir or --config.overwrite=True")
  return listed


def wipe(path):
  """Removes a previous run's checkpoints, metrics and config (`--config.overwrite=True`),
  and a classifier's best checkpoint, self-training rounds and result (process 0; every
  process returns once it is done)."""
  if distributed.is_primary():
    _remove_run(path)
  distributed.barrier("wipe")


def _remove_run(path):
  rounds = [d for d in os.listdir(path) if re.fullmatch(r"round\d+", d)] if os.path.isdir(path) else []
  for sub in (checkpoint.SUBDIR, transfer.BEST, *rounds):
    shutil.rmtree(os.path.join(path, sub), ignore_errors=True)
  for name in (report.METRICS, checkpoint.CONFIG, transfer.RESULT):
    if os.path.exists(os.path.join(path, name)):
      os.remove(os.path.join(path, name))


def write(path, config, derived):
  """Writes `config.json` (the resolved config plus `derived`) by rename, so a kill never
  truncates it (process 0 alone)."""
  if not distributed.is_primary():
    return
  os.makedirs(path, exist_ok=True)
  file = os.path.join(path, checkpoint.CONFIG)
  with open(file + ".tmp", "w") as f:
    json.dump({**json.loads(config.to_json()), "derived": derived}, f, indent=2)
  os.replace(file + ".tmp", file)
