"""When the training loop's periodic actions fire: the run's `Schedule` and each action's `Cadence`.

    s = periodic.Schedule.of(config, steps_per_epoch)
    save = periodic.Cadence(s, epochs=1, seconds=0., min_seconds=30.)
    if save.due(prev_step, step, at_log=s.log_due(prev_step, step), stopping=False):
      ...                                  # checkpoint
      save.fired()

A cadence is due every E epochs and/or every S steps (checked at every call boundary) and
every T seconds (checked only where the loop reads the device anyway, at log steps), but
never sooner than `min_seconds` after it last fired: a tiny epoch does not pay a save each
time. The run's last step and a stop are always due. In a job of many processes the
clock of process 0 decides, so every process takes the same branch.
"""
import time
from typing import NamedTuple

import jax
import numpy as np


def num_epochs(config, steps_per_epoch):
  """`num_epochs`, raised to as many epochs as make `min_steps` steps (small datasets)."""
  return max(config.num_epochs, -(-config.get("min_steps", 0) // steps_per_epoch))


def epoch_cadence(config, epochs):
  """(evaluate every E epochs, checkpoint every C epochs). When min_steps raises the epoch
  count, both stretch by the same factor, so the run keeps as many evals and checkpoints as
  `num_epochs` gives (a tiny dataset's 2-step epochs do not each pay an eval and a save)."""
  stretch = max(1, -(-epochs // max(config.num_epochs, 1)))
  return stretch * config.eval.every_epochs, stretch * config.checkpoint.every_epochs


class Schedule(NamedTuple):
  """The run's length, its log interval and the epoch intervals of eval and checkpoints."""
  steps_per_epoch: int
  epochs: int
  total: int  # steps
  log_every: int  # steps
  eval_every: int  # epochs
  save_every: int  # epochs
  whole_epochs: bool = False  # calls span whole epochs (eval.in_call) rather than one at most

  @classmethod
  def of(cls, config, steps_per_epoch):
    """The schedule of `config` over epochs of `steps_per_epoch` steps (min_steps applied)."""
    epochs = num_epochs(config, steps_per_epoch)
    return cls(steps_per_epoch, epochs, epochs * steps_per_epoch, config.log_every_steps,
               *epoch_cadence(config, epochs), bool(config.eval.get("in_call", False)))

  def call_length(self, step, steps_per_call):
    """Steps in the call starting at `step`: calls end at an epoch end, or within the epoch
    when `steps_per_call` is shorter; with `whole_epochs`, as many whole epochs as fit."""
    spe = self.steps_per_epoch
    if self.whole_epochs and steps_per_call >= spe:
      return min(steps_per_call // spe * spe - step % spe, self.total - step)
    return min(steps_per_call, spe - step % spe, self.total - step)

  def at_epochs(self, prev, step, every):
    """Whether the steps after `prev` up to `step` end an epoch that is a multiple of
    `every`, or the run (traceable: also on device, with prev = step - 1)."""
    period = self.steps_per_epoch * every
    return (step == self.total) | (step // period > prev // period)

  def log_due(self, prev, step):
    """Whether the call from `prev` to `step` crossed a log interval or ended the run."""
    return step // self.log_every > prev // self.log_every or step == self.total

  def keep_period(self, keep_evenly):
    """orbax keep_period keeping about `keep_evenly` checkpoints, on the save interval."""
    if not keep_evenly:
      return None
    return self.steps_per_epoch * self.save_every * max(
        1, self.epochs // self.save_every // keep_evenly)


def _agreed(flag):
  """`flag` as process 0 has it (one small collective; only in a job of many processes)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


class Cadence:
  """When one periodic action is due (0 switches a unit off); `fired` restarts its clock.
  `pinned`: a step interval whose multiples are due whatever `min_seconds` says (the
  checkpoints `keep_period` keeps)."""

  def __init__(self, schedule, *, epochs=0, steps=0, seconds=0., min_seconds=0., pinned=None,
               clock=time.monotonic):
    self.schedule, self.epochs, self.steps, self.pinned = schedule, epochs, steps, pinned
    self.seconds, self.min_seconds, self.clock = seconds, min_seconds, clock
    self.last = clock()

  def due(self, prev, step, *, at_log, stopping=False):
    """Whether the action is due after the call from step `prev` to `step`; `at_log`: the
    loop reads the device after this call anyway."""
    if step == self.schedule.total or stopping or (self.pinned and step % self.pinned == 0):
      return True
    by_count = bool((self.epochs and self.schedule.at_epochs(prev, step, self.epochs))
                    or (self.steps and step // self.steps > prev // self.steps))
    by_clock = bool(self.seconds and at_log)
    if not (by_count or by_clock):
      return False
    if not (self.min_seconds or by_clock):
      return True
    elapsed = self.clock() - self.last
    return _agreed(elapsed >= self.min_seconds and (by_count or elapsed >= self.seconds))

  def fired(self):
    """The action ran now."""
    self.last = self.clock()
