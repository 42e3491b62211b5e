"""The training loop: one function for every model, `train_and_evaluate(config, workdir)`.

    from configs import mlp
    from ae_jax import train
    state = train.train_and_evaluate(mlp.get_config(), '/tmp/mlp')

Validates all input first (nothing is written before that), resumes from the newest
readable checkpoint, runs jitted multi-step calls, evaluates at epoch ends, checkpoints,
and writes metrics and plots. SIGTERM/SIGINT save a checkpoint at the next call
boundary and return early (a second signal acts as usual; one that comes once every
step is done is re-delivered after the plots); a non-finite loss raises
`errors.NonFiniteLoss` and keeps the last good checkpoint. Data order and step rngs
derive from the step, so a run interrupted and resumed ends bit-identical to an
uninterrupted one.
"""
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp

from ae_jax import checkpoint, data, errors, figures, models, report, steps, train_state, visualize
from ae_jax import workdir as workdirs


def validate(config):
  c = config
  integers = {  # name: (value, least allowed)
      "batch_size": (c.batch_size, 1), "steps_per_call": (c.steps_per_call, 1),
      "log_every_steps": (c.log_every_steps, 1), "eval_batch_size": (c.eval_batch_size, 1),
      "num_epochs": (c.num_epochs, 0), "min_steps": (c.get("min_steps", 0), 0),
      "checkpoint.every_epochs": (c.checkpoint.every_epochs, 1),
      "checkpoint.keep": (c.checkpoint.keep, 1), "checkpoint.keep_evenly": (c.checkpoint.keep_evenly, 0)}
  for k, (v, lo) in integers.items():
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
      raise errors.UserError(f"config.{k} must be an integer >= {lo}, got {v!r}")
  if not c.learning_rate > 0:
    raise errors.UserError(f"config.learning_rate must be > 0, got {c.learning_rate}")
  if c.pixel_range not in models.OUTPUT_ACTIVATION:
    raise errors.UserError(f"config.pixel_range must be one of {sorted(models.OUTPUT_ACTIVATION)}")
  if c.optimizer not in ("adam", "adamw"):
    raise errors.UserError(f"config.optimizer must be 'adam' or 'adamw', got {c.optimizer!r}")
  if c.get("rotation_recon", "rotated") not in ("rotated", "upright"):
    raise errors.UserError(f"config.rotation_recon must be 'rotated' or 'upright', got {c.rotation_recon!r}")
  for k in ("max_degrees", "max_shift"):
    v = c.get("pose_augment", {}).get(k, 0.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 90:
      raise errors.UserError(f"config.pose_augment.{k} must be a number in [0, 90), got {v!r}")
  models.check_arch(c)


def num_epochs(config, steps_per_epoch):
  """`num_epochs`, raised to as many epochs as make `min_steps` steps (small datasets)."""
  return max(config.num_epochs, -(-config.get("min_steps", 0) // steps_per_epoch))


def epoch_cadence(config, epochs):
  """(evaluate every E epochs, checkpoint every C epochs). When min_steps raises the epoch
  count, both stretch by the same factor, so the run keeps as many evals and checkpoints as
  `num_epochs` gives (a tiny dataset's 2-step epochs do not each pay an eval and a save)."""
  stretch = max(1, -(-epochs // max(config.num_epochs, 1)))
  return stretch, stretch * config.checkpoint.every_epochs


def _init_from(state, source):
  """Replaces params (and batch stats) by those of another run's newest checkpoint."""
  _, _, variables, step = checkpoint.load_for_inference(source)
  src = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  wrong = checkpoint.describe_misfit(src, {"params": state.params, "batch_stats": state.batch_stats})
  if wrong:
    raise errors.UserError(f"checkpoint in {source} does not fit this model (init_from): {wrong}")
  print(f"initialised params from {source} (step {step})", flush=True)
  return state.replace(params=src["params"], batch_stats=src["batch_stats"])


class _StopFlag:
  """SIGTERM/SIGINT set a flag the loop polls at call boundaries; a second one acts as usual.

  A signal the loop did not act on (it came once every step was done, e.g. during the
  final plots) is re-delivered to the previous handler on exit, so callers still see it.
  """

  def __init__(self):
    self.signal = None
    self.honoured = False
    self._old = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():  # only it may set handlers
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._old[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, _):
    if self.signal is None:
      self.signal = signal.Signals(signum).name
      return
    self._restore()
    signal.raise_signal(signum)  # SIGINT: KeyboardInterrupt; SIGTERM: the process ends now

  def _restore(self):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)
    self._old = {}

  def __exit__(self, *exc):
    self._restore()
    if self.signal and not self.honoured:
      signal.raise_signal(signal.Signals[self.signal])


@jax.jit
def _all_finite(tree):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _last_kept(mngr):
  kept = checkpoint.steps(mngr)
  return f"kept the last good checkpoint (step {kept[-1]})" if kept else "no checkpoint was saved"


def _check_finite(pending, mngr):
  """Host sync at the logging cadence only: raises at the first step whose loss is non-finite."""
  for bad_step in pending:
    if int(bad_step) >= 0:
      raise errors.NonFiniteLoss(f"non-finite loss at step {int(bad_step)}; {_last_kept(mngr)}")


def _save(mngr, state, pending, meta):
  """Checkpoints only finite states: every loss since the last check and the variables."""
  _check_finite(pending, mngr)
  if not _all_finite(train_state.variables(state)):
    raise errors.NonFiniteLoss(f"non-finite parameters at step {int(state.step)}; {_last_kept(mngr)}")
  checkpoint.save(mngr, state, meta)


def write_plots(config, workdir, model, variables, ds):
  """loss_curve.png and reconstructions.png (originals above reconstructions)."""
  visualize.loss_curve(report.read_metrics(workdir), os.path.join(workdir, "plots", "loss_curve.png"))
  figures.save_reconstructions(workdir, model, variables, ds, config.pixel_range,
                               config.reconstruction_indices)


def train_and_evaluate(config, workdir):
  """Trains (or resumes, or extends) the run in `workdir`; returns the last `TrainState`
  (its step is short of the total when SIGTERM/SIGINT stopped the run)."""
  with _StopFlag() as stop:
    return _run(config, workdir, stop)


def _run(config, workdir, stop):
  # Everything that can refuse the input runs before anything is written.
  validate(config)
  full = data.load(config.dataset, config.data_dir)
  train_ds, val_ds = data.split(full, config.val_fraction, config.seed)
  if config.rotation_weight > 0 and full.image_shape[0] != full.image_shape[1]:
    raise errors.UserError(f"rotation needs square images, got {full.image_shape}")
  steps_per_epoch = len(train_ds) // config.batch_size
  if steps_per_epoch < 1:
    raise errors.UserError(f"batch_size {config.batch_size} exceeds the {len(train_ds)} training images")
  mesh = steps.make_mesh(config.batch_size)
  replaced = workdirs.check(config, workdir)  # differences from a run to overwrite, or None

  model = models.build(config, full.image_shape)
  tx = train_state.optimizer(config, steps_per_epoch)
  state = train_state.create(config, model, tx, full.image_shape)
  n_params = models.count_params(state.params)
  print(f"model {config.model}: {n_params:,} parameters ({models.size_mb(state.params):.2f} MB); "
        f"{len(train_ds)} train / {len(val_ds)} val images {full.image_shape} from {full.name}",
        flush=True)

  epochs = num_epochs(config, steps_per_epoch)
  eval_every, save_every = epoch_cadence(config, epochs)
  keep_period = None
  if config.checkpoint.keep_evenly:  # a multiple of the save interval, so saves land on it
    keep_period = steps_per_epoch * save_every * max(
        1, epochs // save_every // config.checkpoint.keep_evenly)
  mngr = checkpoint.manager(workdir, keep=config.checkpoint.keep, keep_period=keep_period, create=False)
  found = None if replaced else checkpoint.restore_newest(mngr, state)
  if found is None and config.init_from:
    state = _init_from(state, config.init_from)

  # The input is accepted: from here on the workdir is written.
  if replaced:
    print(f"overwriting the run in {workdir} (config differs in: {replaced})", flush=True)
    workdirs.wipe(workdir)
    mngr.reload()
  meta = {}
  if found is not None:
    checkpoint.set_aside(mngr, found.damaged)  # frees their steps for the saves to come
    state, meta = found.state, found.meta
    print(f"resuming from checkpoint at step {found.step} (epoch {meta.get('epoch')})", flush=True)
  workdirs.write_config(workdir, config, dict(
      image_shape=list(full.image_shape), steps_per_epoch=steps_per_epoch, num_train=len(train_ds),
      num_val=len(val_ds), num_params=n_params, class_names=full.class_names,
      num_epochs=epochs, total_steps=epochs * steps_per_epoch))

  total = epochs * steps_per_epoch
  if epochs > config.num_epochs:
    print(f"training {epochs} epochs ({total} steps): min_steps={config.min_steps} raises "
          f"num_epochs={config.num_epochs}", flush=True)
  start = step = int(state.step)
  if step >= total:
    print(f"run in {workdir} already finished at step {step} ({epochs} epochs); "
          "nothing to train", flush=True)
    write_plots(config, workdir, model, train_state.variables(state), full)
    return state

  state, images = steps.replicate((state, train_ds.images), mesh)
  val_images = steps.replicate(val_ds.images, mesh) if len(val_ds) else None
  traces = []
  chunk = steps.make_train_chunk(model, tx, config, n_train=len(train_ds), mesh=mesh,
                                 on_trace=traces.append)
  perm = steps.epoch_order(config, len(train_ds), step, mesh)
  evaluate = steps.make_eval(model, config, mesh)
  writer = report.MetricsWriter(workdir, step)
  progress = report.Progress(total, config.batch_size, step)
  pending, t_start = [], time.perf_counter()
  reset_log = bool(meta.get("reset_log"))  # a log line was read just before the save
  # The flag is read once per call, so the save below and the loop's exit see the same value
  # (a signal between two reads would end the loop without its checkpoint).
  stopping = stop.signal is not None
  try:
    while step < total and not stopping:
      k = min(config.steps_per_call, steps_per_epoch - step % steps_per_epoch, total - step)
      first = not traces
      if first:
        print(f"compiling the train step (steps {step}..{total})", flush=True)
      t0 = time.perf_counter()
      state, perm, bad_step = chunk(state, perm, images, k, reset_log)
      reset_log = False
      pending.append(bad_step)
      if first:
        jax.block_until_ready(bad_step)
        print(f"compiled + ran the first {k}-step train call in {time.perf_counter() - t0:.2f} s",
              flush=True)
        progress.restart_clock(step + k)
      prev, step = step, step + k
      epoch, epoch_end = step // steps_per_epoch, step % steps_per_epoch == 0
      periodic = lambda every: epoch_end and (epoch % every == 0 or step == total)  # noqa: E731
      if step // config.log_every_steps > prev // config.log_every_steps or periodic(eval_every):
        _check_finite(pending, mngr)
        pending = []
        log_sum, log_count = jax.device_get((state.log_sum, state.log_count))
        line = {"train_loss": float(log_sum / log_count),
                "learning_rate": train_state.learning_rate(config, state.opt_state),
                "epoch": step / steps_per_epoch}
        writer.write(step, line)
        progress.line(step, {"loss": line["train_loss"]}, epoch=-(-step // steps_per_epoch),
                      num_epochs=epochs)
        reset_log = True
      if periodic(eval_every) and val_images is not None:
        ev = jax.device_get(evaluate(train_state.variables(state), val_images))
        writer.write(step, {"eval_loss": ev.pop("eval_loss"), **{f"eval_{k}": v for k, v in ev.items()}})
        print(f"  eval after epoch {step // steps_per_epoch}: " +
              ", ".join(f"{k} {float(v):.4g}" for k, v in ev.items()), flush=True)
      stopping = stop.signal is not None
      if periodic(save_every) or stopping:
        _save(mngr, state, pending, {"epoch": epoch, "batch_in_epoch": step % steps_per_epoch,
                                     "steps_per_epoch": steps_per_epoch, "reset_log": reset_log})
        pending = []
  finally:
    writer.close()
  if stopping and step < total:
    stop.honoured = True
    done = "checkpoint saved" if step > start else "nothing new to save"
    print(f"stopped by {stop.signal} at step {step}: {done}; rerun the same command to resume",
          flush=True)
    return state
  print(f"trained {total} steps in {time.perf_counter() - t_start:.1f} s", flush=True)
  write_plots(config, workdir, model, train_state.variables(state), full)
  return state
