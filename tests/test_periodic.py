"""Cadences of the periodic actions: epochs, steps, seconds, the min_seconds floor, the end."""
from ae_jax import periodic
from tests.conftest import tiny


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def fire_steps(cadence, clock, calls, seconds_per_call=1.0, log_every=None):
  """Steps after which `cadence` was due, over calls of the given lengths."""
  fired, step = [], 0
  for k in calls:
    prev, step = step, step + k
    clock.now += seconds_per_call
    at_log = log_every is not None and step // log_every > prev // log_every
    if cadence.due(prev, step, at_log=at_log):
      fired.append(step)
      cadence.fired()
  return fired


def schedule(steps_per_epoch=10, epochs=5):
  config = tiny(num_epochs=epochs)
  return periodic.Schedule.of(config, steps_per_epoch)


def test_epochs_and_steps_fire_on_their_boundaries_and_the_last_step():
  s, clock = schedule(), Clock()
  assert fire_steps(periodic.Cadence(s, epochs=2, clock=clock), clock, [5] * 10) == [20, 40, 50]
  # every 15 steps: calls of 5 cross 15, 30, 45; the run's end is always due
  assert fire_steps(periodic.Cadence(s, steps=15, clock=clock), clock, [5] * 10) == [15, 30, 45, 50]


def test_min_seconds_skips_saves_too_close_to_the_last_but_never_the_end():
  s, clock = schedule(), Clock()
  # an epoch takes 2 s, the floor is 5 s: epochs 3 (6 s), 6 would be next but the run ends at 5
  cadence = periodic.Cadence(s, epochs=1, min_seconds=5.0, clock=clock)
  assert fire_steps(cadence, clock, [5] * 10) == [30, 50]


def test_pinned_steps_are_saved_however_close_to_the_last_save():
  s, clock = schedule(), Clock()  # 5 epochs of 10 steps, 2 s an epoch
  cadence = periodic.Cadence(s, epochs=1, min_seconds=5.0, pinned=20, clock=clock)
  assert fire_steps(cadence, clock, [5] * 10) == [20, 40, 50]  # 30 is 2 s after 20: skipped


def test_seconds_fire_only_at_log_steps_and_a_stop_is_always_due():
  s, clock = schedule(), Clock()
  cadence = periodic.Cadence(s, seconds=3.0, clock=clock)
  # 1 s a call of 5 steps, log every 10 steps: due at the first log step 3 s after the last
  assert fire_steps(cadence, clock, [5] * 10, log_every=10) == [20, 40, 50]
  assert periodic.Cadence(s, epochs=100, min_seconds=1e9, clock=clock).due(
      0, 3, at_log=False, stopping=True)


def test_calls_span_whole_epochs_only_with_in_call_eval():
  per_epoch = schedule()  # 5 epochs of 10 steps
  assert [per_epoch.call_length(st, 32) for st in (0, 10, 45)] == [10, 10, 5]
  whole = periodic.Schedule.of(tiny(num_epochs=5, **{"eval.in_call": True}), 10)
  assert [whole.call_length(st, 32) for st in (0, 30, 45)] == [30, 20, 5]  # 3 epochs, to the end
  assert whole.call_length(0, 7) == 7  # shorter than an epoch: as before
  # an epoch cadence is due when a call passes one of its epoch ends
  clock = Clock()
  assert fire_steps(periodic.Cadence(whole, epochs=2, clock=clock), clock, [30, 20]) == [30, 50]
