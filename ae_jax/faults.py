"""What ends a run early: SIGTERM/SIGINT (`StopSignal`) and non-finite losses (`NanGuard`).

    with faults.StopSignal() as stop:          # the loop polls stop.signal between calls
      guard = faults.NanGuard(mngr)
      guard.add(bad_step)                      # per call, no host read
      guard.check()                            # at the log cadence: NonFiniteLoss at the first bad step
      guard.save(state, meta)                  # checkpoints only a finite state
"""
import signal
import threading

import jax
import jax.numpy as jnp

from ae_jax import checkpoint, errors, train_state


class StopSignal:
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


class NanGuard:
  """Collects each call's first-bad-step flag without reading it back; `check` reads them
  (a host sync, at the logging cadence only) and raises `NonFiniteLoss` at the first bad
  step; `save` checkpoints only a state whose losses and variables are all finite."""

  def __init__(self, mngr):
    self.mngr, self.unchecked = mngr, []

  def add(self, bad_step):
    """Records one call's first bad step (-1: none), on device."""
    self.unchecked.append(bad_step)

  def _last_kept(self):
    kept = checkpoint.steps(self.mngr)
    return f"kept the last good checkpoint (step {kept[-1]})" if kept else "no checkpoint was saved"

  def check(self):
    """Reads the recorded flags; raises `NonFiniteLoss` at the first bad step."""
    for bad_step in self.unchecked:
      if int(bad_step) >= 0:
        raise errors.NonFiniteLoss(f"non-finite loss at step {int(bad_step)}; {self._last_kept()}")
    self.unchecked = []

  def save(self, state, meta):
    """Checkpoints `state` once its losses and variables are known to be finite."""
    self.check()
    if not _all_finite(train_state.variables(state)):
      raise errors.NonFiniteLoss(f"non-finite parameters at step {int(state.step)}; "
                                 f"{self._last_kept()}")
    checkpoint.save(self.mngr, state, meta)
