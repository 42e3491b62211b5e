"""The training loop: one function for every model, `train_and_evaluate(config, workdir)`.

    from configs import mlp
    from ae_jax import train
    state = train.train_and_evaluate(mlp.get_config(), '/tmp/mlp')

Validates input first (nothing is written before that), resumes from the newest
checkpoint, runs jitted multi-step calls, evaluates every epoch, checkpoints,
stops cleanly on SIGTERM/SIGINT, and writes metrics and plots.
"""
import functools
import json
import os
import shutil
import signal
import time

import jax
import numpy as np

from ae_jax import checkpoint, data, errors, models, report, steps, train_state, visualize

# Keys that may change between runs on one workdir (extending or re-plotting a run).
RESUMABLE_KEYS = ("num_epochs", "log_every_steps", "steps_per_call", "overwrite",
                  "eval_batch_size", "reconstruction_indices", "checkpoint", "init_from")


def validate(config):
  c = config
  positive = {"batch_size": c.batch_size, "steps_per_call": c.steps_per_call,
              "log_every_steps": c.log_every_steps, "eval_batch_size": c.eval_batch_size}
  for k, v in positive.items():
    if not isinstance(v, int) or v < 1:
      raise errors.UserError(f"config.{k} must be a positive integer, got {v!r}")
  if c.num_epochs < 0:
    raise errors.UserError(f"config.num_epochs must be >= 0, got {c.num_epochs}")
  if not c.learning_rate > 0:
    raise errors.UserError(f"config.learning_rate must be > 0, got {c.learning_rate}")
  if c.pixel_range not in models.OUTPUT_ACTIVATION:
    raise errors.UserError(f"config.pixel_range must be one of {sorted(models.OUTPUT_ACTIVATION)}")
  if c.optimizer not in ("adam", "adamw"):
    raise errors.UserError(f"config.optimizer must be 'adam' or 'adamw', got {c.optimizer!r}")
  models.model_class(c.model)


def _identity(config_dict):
  return {k: v for k, v in config_dict.items() if k not in RESUMABLE_KEYS + ("derived",)}


def _check_workdir(config, workdir):
  """Refuses a workdir that holds a run of another config, unless config.overwrite."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return
  with open(path) as f:
    old = json.load(f)
  new = json.loads(config.to_json())
  diff = sorted(k for k in set(_identity(old)) | set(_identity(new)) if old.get(k) != new.get(k))
  if not diff:
    return
  if not config.overwrite:
    raise errors.UserError(f"{workdir} holds a run of a different config (differs in: "
                           f"{', '.join(diff)}); use another --workdir or --config.overwrite=True")
  print(f"overwriting the run in {workdir} (config differs in: {', '.join(diff)})", flush=True)
  shutil.rmtree(os.path.join(workdir, checkpoint.SUBDIR), ignore_errors=True)
  for name in (report.METRICS, "config.json"):
    if os.path.exists(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name))


def _init_from(state, source):
  """Replaces params (and batch stats) by those of another run's newest checkpoint."""
  _, _, variables, step = checkpoint.load_for_inference(source)
  src = (variables["params"], variables.get("batch_stats", {}))
  dst = (state.params, state.batch_stats)
  shapes = lambda t: jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), t)
  if jax.tree_util.tree_structure(src) != jax.tree_util.tree_structure(dst) or shapes(src) != shapes(dst):
    raise errors.UserError(f"checkpoint in {source} does not fit this model (init_from)")
  print(f"initialised params from {source} (step {step})", flush=True)
  return state.replace(params=src[0], batch_stats=src[1])


class _StopFlag:
  """SIGTERM/SIGINT set a flag; the loop checkpoints at the next call boundary."""

  def __init__(self):
    self.signal = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._old[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, _):
    self.signal = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)


def _check_finite(pending):
  """Host sync at the logging cadence only: raises at the first non-finite loss."""
  for bad_step in pending:
    if int(bad_step) >= 0:
      raise errors.NonFiniteLoss(f"non-finite loss at step {int(bad_step)}; the last good checkpoint is kept")


@functools.partial(jax.jit, static_argnums=(0, 3))
def reconstruct(model, variables, x01_BHWC, pixel_range):
  """[0,1] images → [0,1] reconstructions, eval mode."""
  out = model.apply(variables, data.to_range(x01_BHWC, pixel_range), train=False)
  return data.from_range(out["recon"], pixel_range)


def write_plots(config, workdir, model, variables, ds):
  """loss_curve.png and reconstructions.png (originals above reconstructions)."""
  plots = os.path.join(workdir, "plots")
  visualize.loss_curve(report.read_metrics(workdir), os.path.join(plots, "loss_curve.png"))
  idx = [i for i in config.reconstruction_indices if 0 <= i < len(ds)]
  recon = np.asarray(reconstruct(model, variables, ds.images[idx], config.pixel_range))
  visualize.image_rows([ds.images[idx], recon], ["original", "reconstruction"],
                       os.path.join(plots, "reconstructions.png"), col_names=idx)


def train_and_evaluate(config, workdir):
  validate(config)
  full = data.load(config.dataset, config.data_dir)
  train_ds, val_ds = data.split(full, config.val_fraction, config.seed)
  if config.rotation_weight > 0 and full.image_shape[0] != full.image_shape[1]:
    raise errors.UserError(f"rotation needs square images, got {full.image_shape}")
  steps_per_epoch = len(train_ds) // config.batch_size
  if steps_per_epoch < 1:
    raise errors.UserError(f"batch_size {config.batch_size} exceeds the {len(train_ds)} training images")
  mesh = steps.make_mesh(config.batch_size)
  _check_workdir(config, workdir)

  model = models.build(config, full.image_shape)
  tx = train_state.optimizer(config, steps_per_epoch)
  state = train_state.create(config, model, tx, full.image_shape)
  n_params = models.count_params(state.params)
  print(f"model {config.model}: {n_params:,} parameters ({models.size_mb(state.params):.2f} MB); "
        f"{len(train_ds)} train / {len(val_ds)} val images {full.image_shape} from {full.name}",
        flush=True)

  keep_period = None
  if config.checkpoint.keep_evenly:
    keep_period = steps_per_epoch * max(1, config.num_epochs // config.checkpoint.keep_evenly)
  mngr = checkpoint.manager(workdir, keep=config.checkpoint.keep, keep_period=keep_period)
  restored, meta = checkpoint.restore(mngr, state)
  if restored is not None:
    state = restored
    print(f"resuming from checkpoint at step {int(state.step)} (epoch {meta.get('epoch')})", flush=True)
  elif config.init_from:
    state = _init_from(state, config.init_from)

  derived = dict(image_shape=list(full.image_shape), steps_per_epoch=steps_per_epoch,
                 num_train=len(train_ds), num_val=len(val_ds), num_params=n_params,
                 class_names=full.class_names)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump({**json.loads(config.to_json()), "derived": derived}, f, indent=2)

  total = config.num_epochs * steps_per_epoch
  step = int(state.step)
  if step >= total:
    print(f"run in {workdir} already finished at step {step} ({config.num_epochs} epochs); "
          "nothing to train", flush=True)
    write_plots(config, workdir, model, train_state.variables(state), full)
    return state

  state, images = steps.replicate((state, train_ds.images), mesh)
  val_images = steps.replicate(val_ds.images, mesh) if len(val_ds) else None
  traces = []
  chunk = steps.make_train_chunk(model, tx, config, n_train=len(train_ds), mesh=mesh,
                                 on_trace=traces.append)
  evaluate = steps.make_eval(model, config, mesh)
  writer = report.MetricsWriter(workdir, step)
  progress = report.Progress(total, config.batch_size, step)
  pending, t_start = [], time.perf_counter()
  reset_log = bool(meta and meta.get("reset_log"))  # a log line was read just before the save
  try:
    with _StopFlag() as stop:
      while step < total:
        k = min(config.steps_per_call, steps_per_epoch - step % steps_per_epoch, total - step)
        first = not traces
        t0 = time.perf_counter()
        state, bad_step = chunk(state, images, k, reset_log)
        reset_log = False
        pending.append(bad_step)
        if first:
          jax.block_until_ready(bad_step)
          print(f"compiled + ran the first {k}-step train call in {time.perf_counter() - t0:.2f} s",
                flush=True)
          progress.restart_clock(step + k)
        prev, step = step, step + k
        epoch_end = step % steps_per_epoch == 0
        if step // config.log_every_steps > prev // config.log_every_steps or epoch_end:
          _check_finite(pending)
          pending = []
          log_sum, log_count = jax.device_get((state.log_sum, state.log_count))
          line = {"train_loss": float(log_sum / log_count),
                  "learning_rate": train_state.learning_rate(config, state.opt_state),
                  "epoch": step / steps_per_epoch}
          writer.write(step, line)
          progress.line(step, {"loss": line["train_loss"]}, epoch=-(-step // steps_per_epoch),
                        num_epochs=config.num_epochs)
          reset_log = True
        if epoch_end and val_images is not None:
          ev = jax.device_get(evaluate(train_state.variables(state), val_images))
          writer.write(step, {"eval_loss": ev.pop("eval_loss"), **{f"eval_{k}": v for k, v in ev.items()}})
          print(f"  eval after epoch {step // steps_per_epoch}: " +
                ", ".join(f"{k} {float(v):.4g}" for k, v in ev.items()), flush=True)
        epoch = step // steps_per_epoch
        if (epoch_end and (epoch % config.checkpoint.every_epochs == 0 or step == total)) or stop.signal:
          _check_finite(pending)
          pending = []
          checkpoint.save(mngr, state, {"epoch": epoch, "batch_in_epoch": step % steps_per_epoch,
                                        "steps_per_epoch": steps_per_epoch,
                                        "reset_log": reset_log})
        if stop.signal:
          print(f"stopped by {stop.signal} at step {step}: checkpoint saved; "
                "rerun the same command to resume", flush=True)
          return state
  finally:
    writer.close()
  print(f"trained {total} steps in {time.perf_counter() - t_start:.1f} s", flush=True)
  write_plots(config, workdir, model, train_state.variables(state), full)
  return state
