"""The training loop: one function for every model, `train_and_evaluate(config, workdir)`.

    from configs import mlp
    from ae_jax import train
    state = train.train_and_evaluate(mlp.get_config(), '/tmp/mlp')

Validates all input first (nothing is written before that), resumes from the newest
readable checkpoint, runs jitted multi-step calls on data held on device or streamed from
disk (ae_jax/stream.py), evaluates and checkpoints (in the background) on their cadences
(ae_jax/periodic.py), and writes metrics and plots. SIGTERM/SIGINT save a checkpoint at the next call
boundary and return early (a second signal acts as usual; one that comes once every
step is done is re-delivered after the plots); a non-finite loss raises
`errors.NonFiniteLoss` and keeps the last good checkpoint. Data order and step rngs
derive from the step, so a run interrupted and resumed ends bit-identical to an
uninterrupted one.

A classifier (`config.task="classify"`, configs/transfer.py) trains through the same
pieces on (images, labels), keeps its best-by-validation state (ae_jax/transfer.py) and
runs its self-training rounds as runs of their own.

The pieces, in order: `set_up` (validate, build, restore-or-init; reads only),
`take_workdir` (overwrite, set damaged checkpoints aside, write config.json), `train_loop`
(the jitted multi-step calls of `steps.make_train_call` and, on the `periodic.Schedule` and
its `Cadence`s, `LogLines`, `eval_line` and `faults.NanGuard.save` checkpoints, and the
`faults.StopSignal`), then `write_plots`.
"""
import os
import time
from typing import Any, NamedTuple, Optional

import jax
import numpy as np

from ae_jax import backend, checkpoint, data, distributed, errors, faults, figures, models
from ae_jax import periodic, pixels, report, run_config, steps, stream, train_state, transfer


def validate(config):
  """Raises `UserError` for a config value no run can take (before anything is written)."""
  c = config
  integers = {  # name: (value, least allowed)
      "batch_size": (c.batch_size, 1), "steps_per_call": (c.steps_per_call, 0),
      "log_every_steps": (c.log_every_steps, 1), "eval_batch_size": (c.eval_batch_size, 1),
      "num_epochs": (c.num_epochs, 0), "min_steps": (c.get("min_steps", 0), 0),
      "checkpoint.every_epochs": (c.checkpoint.every_epochs, 1),
      "checkpoint.keep": (c.checkpoint.keep, 1), "checkpoint.keep_evenly": (c.checkpoint.keep_evenly, 0)}
  integers.update({"eval.every_epochs": (c.eval.every_epochs, 1),
                   "eval.every_steps": (c.eval.every_steps, 0),
                   "checkpoint.every_steps": (c.checkpoint.every_steps, 0)})
  for k, (v, lo) in integers.items():
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
      raise errors.UserError(f"config.{k} must be an integer >= {lo}, got {v!r}")
  seconds = {"eval.every_seconds": c.eval.every_seconds,
             "checkpoint.every_seconds": c.checkpoint.every_seconds,
             "checkpoint.min_seconds": c.checkpoint.min_seconds}
  for k, v in seconds.items():
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
      raise errors.UserError(f"config.{k} must be a number of seconds >= 0, got {v!r}")
  if not c.learning_rate > 0:
    raise errors.UserError(f"config.learning_rate must be > 0, got {c.learning_rate}")
  pixels.parse(c.pixel_range)
  if c.optimizer not in ("adam", "adamw"):
    raise errors.UserError(f"config.optimizer must be 'adam' or 'adamw', got {c.optimizer!r}")
  if c.get("rotation_recon", "rotated") not in ("rotated", "upright"):
    raise errors.UserError(f"config.rotation_recon must be 'rotated' or 'upright', got {c.rotation_recon!r}")
  for k in ("max_degrees", "max_shift"):
    v = c.get("pose_augment", {}).get(k, 0.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 90:
      raise errors.UserError(f"config.pose_augment.{k} must be a number in [0, 90), got {v!r}")
  models.check_arch(c)
  if c.get("task", "autoencode") not in TASKS:
    raise errors.UserError(f"config.task must be one of {TASKS}, got {c.task!r}")
  if not isinstance(c.eval.in_call, bool):
    raise errors.UserError(f"config.eval.in_call must be True or False, got {c.eval.in_call!r}")
  if classifying(c):
    transfer.validate(c)
  elif c.eval.in_call:
    raise errors.UserError("config.eval.in_call keeps a classifier's best-by-validation state "
                           "inside the train call; it needs task='classify'")
  stream.check(c)


TASKS = ("autoencode", "classify")


def classifying(config):
  """Whether the run trains a classifier (configs/transfer.py) rather than an autoencoder."""
  return config.get("task", "autoencode") == "classify"


def init_from(state, source):
  """Replaces params (and batch stats) by those of another run's newest checkpoint."""
  _, _, variables, step = checkpoint.load_for_inference(source)
  src = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  wrong = checkpoint.describe_misfit(src, {"params": state.params, "batch_stats": state.batch_stats})
  if wrong:
    raise errors.UserError(f"checkpoint in {source} does not fit this model (init_from): {wrong}")
  print(f"initialised params from {source} (step {step})", flush=True)
  return state.replace(params=src["params"], batch_stats=src["batch_stats"])


def write_plots(config, workdir, model, variables, ds):
  """loss_curve.png, and for an autoencoder reconstructions.png (originals above them);
  process 0 alone."""
  if not distributed.is_primary():
    return
  figures.loss_curve(report.read_metrics(workdir), os.path.join(workdir, "plots", "loss_curve.png"))
  if not classifying(config):
    figures.save_reconstructions(workdir, model, variables, ds, config.reconstruction_indices)


class Run(NamedTuple):
  """Everything `set_up` builds before the workdir is touched."""
  model: Any
  tx: Any
  state: Any  # restored, initialised from init_from, or fresh
  full: data.Dataset
  train_ds: data.Dataset
  val_ds: data.Dataset
  schedule: periodic.Schedule
  mngr: Any
  mesh: Any
  streamed: bool  # train_ds is read from disk per step (ae_jax/stream.py), not held on device
  restored: Optional[checkpoint.Restored]
  overwrite_diff: Optional[str]  # the differences of another config's run to wipe


def set_up(config, workdir, train_ds=None):
  """Validates the input and builds the run, restoring its newest checkpoint; reads only.
  `train_ds` replaces the training split (a classifier's self-training rounds)."""
  validate(config)
  full = data.load(config.dataset, config.data_dir, lazy=not classifying(config))
  streamed = False
  if classifying(config):
    parts = transfer.splits(config, full)
    val_ds = parts["val"]
    train_ds = parts["train"] if train_ds is None else train_ds
  else:
    train_ds, val_ds = data.split(full, config.val_fraction, config.seed)
    streamed = stream.chosen(config, train_ds)
    train_ds, val_ds = (train_ds if streamed else train_ds.in_memory()), val_ds.in_memory()
  if config.get("rotation_weight", 0) > 0 and full.image_shape[0] != full.image_shape[1]:
    raise errors.UserError(f"rotation needs square images, got {full.image_shape}")
  steps_per_epoch = len(train_ds) // config.batch_size
  if steps_per_epoch < 1:
    raise errors.UserError(f"batch_size {config.batch_size} exceeds the {len(train_ds)} training images")
  mesh = steps.make_mesh(config.batch_size)
  overwrite_diff = run_config.check(config, workdir)

  model = train_state.build_model(config, full.image_shape, full.num_classes)
  tx = train_state.optimizer(config, steps_per_epoch)
  state = train_state.create(config, model, tx, full.image_shape)
  name = (f"classifier ({config.model} encoder + head {tuple(config.head)})"
          if classifying(config) else f"model {config.model}")
  print(f"{name}: {models.count_params(state.params):,} parameters "
        f"({models.size_mb(state.params):.2f} MB); {len(train_ds)} train / {len(val_ds)} val "
        f"images {full.image_shape} from {full.name}", flush=True)
  schedule = periodic.Schedule.of(config, steps_per_epoch)
  mngr = checkpoint.manager(workdir, keep=config.checkpoint.keep,
                            keep_period=schedule.keep_period(config.checkpoint.keep_evenly),
                            create=False, async_save=True)
  restored = None if overwrite_diff else checkpoint.restore_newest(mngr, state)
  if restored is None and config.init_from:
    state = init_from(state, config.init_from)
  if restored is None and classifying(config) and config.mode != "scratch":
    loaded, step = transfer.load_pretrained(train_state.variables(state), config.pretrained_workdir)
    state = state.replace(params=loaded["params"], batch_stats=loaded.get("batch_stats", {}))
    print(f"encoder from {config.pretrained_workdir} (step {step}); mode {config.mode}", flush=True)
  return Run(model, tx, state, full, train_ds, val_ds, schedule, mngr, mesh, streamed, restored,
             overwrite_diff)


def take_workdir(config, workdir, run):
  """The input is accepted: wipes another config's run if asked, sets damaged checkpoints
  aside, writes config.json. Returns (state, checkpoint meta) to start from."""
  if run.overwrite_diff:
    print(f"overwriting the run in {workdir} (config differs in: {run.overwrite_diff})", flush=True)
    run_config.wipe(workdir)
    run.mngr.reload()
  state, meta = run.state, {}
  if run.restored is not None:
    checkpoint.set_aside(run.mngr, run.restored.damaged)  # frees their steps for the saves to come
    state, meta = run.restored.state, run.restored.meta
    print(f"resuming from checkpoint at step {run.restored.step} (epoch {meta.get('epoch')})",
          flush=True)
  s = run.schedule
  run_config.write(workdir, config, dict(
      image_shape=list(run.full.image_shape), steps_per_epoch=s.steps_per_epoch,
      num_train=len(run.train_ds), num_val=len(run.val_ds),
      num_params=models.count_params(state.params), class_names=run.full.class_names,
      num_classes=run.full.num_classes, num_epochs=s.epochs, total_steps=s.total))
  if s.epochs > config.num_epochs:
    print(f"training {s.epochs} epochs ({s.total} steps): min_steps={config.min_steps} raises "
          f"num_epochs={config.num_epochs}", flush=True)
  return state, meta


def train_and_evaluate(config, workdir):
  """Trains (or resumes, or extends) the run in `workdir`; returns the last `TrainState`
  (its step is short of the total when SIGTERM/SIGINT stopped the run). A classifier
  then runs its self-training rounds (each a run of its own in WORKDIR/roundR) and writes
  WORKDIR/result.json. A live run holding `workdir` (WORKDIR/.lock) is an error."""
  validate(config)
  run_config.check_writable(workdir)
  with faults.StopSignal() as stop, faults.WorkdirLock(workdir):
    state, run = train_one(config, workdir, stop)
    if not classifying(config):
      return state
    parts = transfer.splits(config, run.full)
    for r in range(1, config.self_train.rounds + 1):
      if stop.honoured:
        return state
      train_ds = transfer.with_pseudo_labels(config, parts, transfer.round_dir(workdir, r - 1), r)
      print(f"self-training round {r}: {len(train_ds)} training labels", flush=True)
      state, _ = train_one(transfer.round_config(config, len(train_ds)),
                           transfer.round_dir(workdir, r), stop, train_ds)
    if not stop.honoured:
      transfer.write_result(config, workdir, transfer.round_dir(workdir, config.self_train.rounds),
                            parts["test"])
    return state


def train_one(config, workdir, stop, train_ds=None):
  """One run in `workdir`, from set-up to plots; returns (last TrainState, Run)."""
  run = set_up(config, workdir, train_ds)
  state, meta = take_workdir(config, workdir, run)
  if int(state.step) >= run.schedule.total:
    print(f"run in {workdir} already finished at step {int(state.step)} "
          f"({run.schedule.epochs} epochs); nothing to train", flush=True)
  else:
    state = train_loop(config, workdir, run, state, meta, stop)
    if stop.honoured:
      return state, run
  write_plots(config, workdir, run.model, train_state.variables(state), run.full)
  return state, run


def _arrays(config, ds):
  """What the steps read of a dataset: its images, and for a classifier its labels."""
  return (ds.images, ds.labels) if classifying(config) else ds.images


def data_feed(config, run, step, meta, steps_per_call):
  """(first perm, source_of(k), data_meta()): the training data's way into the calls from
  `step` — on device whole (put there once), or streamed from disk a call at a time
  (`stream.Batches`, resumed from the checkpoint's iterator state) — and what a checkpoint's
  meta records of it."""
  if run.streamed:
    batches = stream.Batches(config, run.train_ds, run.mesh, start_step=step,
                             total=run.schedule.total, call_steps=steps_per_call,
                             state=meta.get(stream.STATE_KEY))
    unread = steps.replicate(np.zeros(1, np.int32), run.mesh)  # streamed calls take no perm
    return unread, batches.next_call, lambda: {stream.STATE_KEY: batches.state()}
  source = steps.replicate(_arrays(config, run.train_ds), run.mesh)
  return (steps.epoch_order(config, len(run.train_ds), step, run.mesh), lambda k: source, dict)


def train_loop(config, workdir, run, state, meta, stop):
  """The jitted multi-step calls from `state.step` to the end, with the periodic actions:
  a log line (and the NaN check), an eval at epoch ends, checkpoints, and the stop signal."""
  s, mesh = run.schedule, run.mesh
  start = step = int(state.step)
  steps_per_call = backend.steps_per_call(config)
  state = steps.replicate(state, mesh)
  perm, source_of, data_meta = data_feed(config, run, step, meta, steps_per_call)
  val_source = steps.replicate(_arrays(config, run.val_ds), mesh) if len(run.val_ds) else None
  best = transfer.BestKeeper(workdir) if classifying(config) else None
  in_call = config.eval.in_call  # the best-by-val state is kept inside the calls (a classifier)
  traces = []
  evaluate = steps.make_eval(run.model, config, mesh)
  train_call = steps.make_train_call(run.model, run.tx, config, n_train=len(run.train_ds),
                                     mesh=mesh, on_trace=traces.append, streamed=run.streamed,
                                     keep_best=(evaluate, s) if in_call else None)
  best_so_far = steps.initial_best(state, best.acc, mesh) if in_call else None
  writer = report.MetricsWriter(workdir, step)
  guard = faults.NanGuard(checkpoint.Saver(run.mngr))
  logs = LogLines(config, s, writer, report.Progress(s.total, config.batch_size, step), guard)
  c = config.checkpoint
  evals = periodic.Cadence(s, epochs=s.eval_every, steps=config.eval.every_steps,
                           seconds=config.eval.every_seconds)
  saves = periodic.Cadence(s, epochs=s.save_every, steps=c.every_steps, seconds=c.every_seconds,
                           min_seconds=c.min_seconds, pinned=s.keep_period(c.keep_evenly))
  # The state's loss sums were read for a log line just before the checkpoint was saved.
  zero_log_sums = bool(meta.get("log_sums_read", meta.get("reset_log")))
  t_start = time.perf_counter()
  # The flag is read once per call, so the save below and the loop's exit see the same value
  # (a signal between two reads would end the loop without its checkpoint).
  stopping = stop.signal is not None
  try:
    while step < s.total and not stopping:
      k = s.call_length(step, steps_per_call)
      first = not traces
      if first:
        print(f"compiling the train step (steps {step}..{s.total})", flush=True)
      t0 = time.perf_counter()
      if in_call:
        state, perm, bad_step, best_so_far = train_call(state, perm, source_of(k), k,
                                                        zero_log_sums, best_so_far, val_source)
      else:
        state, perm, bad_step = train_call(state, perm, source_of(k), k, zero_log_sums)
      zero_log_sums = False
      logs.write()  # the line of the call before, read while this one runs
      guard.add(bad_step)
      if first:
        jax.block_until_ready(bad_step)
        print(f"compiled + ran the first {k}-step train call in {time.perf_counter() - t0:.2f} s",
              flush=True)
        logs.progress.restart_clock(step + k)
      prev, step = step, step + k
      at_log = s.log_due(prev, step)
      evaluating = val_source is not None and evals.due(prev, step, at_log=at_log)
      if at_log or evaluating:
        logs.take(state, step)
        zero_log_sums = True
      if evaluating:
        logs.write()  # an eval line comes after the train loss it follows
        ev = eval_line(evaluate, state, val_source, step, s, writer, guard)
        evals.fired()
        if best is not None and not in_call:
          best.update(state, ev, step // s.steps_per_epoch)
      if in_call:  # the best state of the call's evals, saved if it beats WORKDIR/best's
        best.update(best_so_far["state"], best_so_far,
                    int(best_so_far["step"]) // s.steps_per_epoch)
      stopping = stop.signal is not None
      if saves.due(prev, step, at_log=at_log, stopping=stopping):
        logs.write()  # a checkpoint follows the lines up to it: resume does not redo them
        guard.save(state, {"epoch": step // s.steps_per_epoch,
                           "batch_in_epoch": step % s.steps_per_epoch,
                           "steps_per_epoch": s.steps_per_epoch, "log_sums_read": zero_log_sums,
                           **data_meta()})
        saves.fired()
    logs.write()
    guard.saver.finish()
  finally:
    guard.saver.close()
    writer.close()
  if stopping and step < s.total:
    stop.honoured = True
    done = "checkpoint saved" if step > start else "nothing new to save"
    print(f"stopped by {stop.signal} at step {step}: {done}; rerun the same command to resume",
          flush=True)
    return state
  print(f"trained {s.total} steps in {time.perf_counter() - t_start:.2f} s", flush=True)
  return state


class LogLines:
  """Train-loss lines read one call late, so the device never waits for them: `take` copies
  the loss sums (and the plateau scale) on device and starts fetching them; `write`, called
  once the next call is queued, checks the NaN flags up to that step, then writes and prints."""

  def __init__(self, config, schedule, writer, progress, guard):
    self.config, self.schedule, self.writer, self.progress, self.guard = (
        config, schedule, writer, progress, guard)
    self.pending = None

  def take(self, state, step):
    """Snapshots the mean train loss since the last line, at `step`."""
    self.write()
    values = [x.copy() if isinstance(x, jax.Array) else x  # the scale is 1.0 without a plateau
              for x in (state.log_sum, state.log_count, train_state.lr_scale(state.opt_state))]
    for x in values:
      if isinstance(x, jax.Array):
        x.copy_to_host_async()
    self.pending = (step, values, len(self.guard.unchecked))

  def write(self):
    """Writes the line taken last, if any (a host read; `NonFiniteLoss` first if a step up to
    it was not finite)."""
    if self.pending is None:
      return
    (step, values, calls), self.pending = self.pending, None
    self.guard.check(calls)
    log_sum, log_count, scale = jax.device_get(values)
    s = self.schedule
    line = {"train_loss": float(log_sum / log_count),
            "learning_rate": self.config.learning_rate * float(scale),
            "epoch": step / s.steps_per_epoch}
    self.writer.write(step, line)
    self.progress.line(step, {"loss": line["train_loss"]}, epoch=-(-step // s.steps_per_epoch),
                       num_epochs=s.epochs)


def eval_line(evaluate, state, val_source, step, schedule, writer, guard):
  """Evaluates on the validation set; writes, prints and returns the means (`NonFiniteLoss`
  before writing when they are not finite)."""
  ev = jax.device_get(evaluate(train_state.variables(state), val_source))
  guard.check_eval(ev, step)
  writer.write(step, {"eval_loss": ev.pop("eval_loss"), **{f"eval_{k}": v for k, v in ev.items()}})
  print(f"  eval after epoch {step // schedule.steps_per_epoch}: " +
        ", ".join(f"{k} {float(v):.4g}" for k, v in ev.items()), flush=True)
  return ev
