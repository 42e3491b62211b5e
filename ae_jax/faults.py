"""What ends a run early: SIGTERM/SIGINT (`StopSignal`), non-finite losses (`NanGuard`),
and a second launch on a workdir a live run holds (`WorkdirLock`).

    with faults.WorkdirLock(workdir):          # UserError naming the owner if a live run holds it
      ...
    with faults.StopSignal() as stop:          # the loop polls stop.signal between calls
      guard = faults.NanGuard(checkpoint.Saver(mngr))
      guard.add(bad_step)                      # per call, no host read
      guard.check()                            # at the log cadence: NonFiniteLoss at the first bad step
      guard.save(state, meta)                  # checkpoints only a finite state
"""
import json
import os
import signal
import socket
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from ae_jax import checkpoint, distributed, errors, train_state


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
  step; `save` checkpoints (through a `checkpoint.Saver`) only a state whose losses and
  variables are all finite."""

  def __init__(self, saver):
    self.saver, self.unchecked = saver, []

  def add(self, bad_step):
    """Records one call's first bad step (-1: none), on device."""
    self.unchecked.append(bad_step)

  def _last_kept(self):
    self.saver.close()  # the save in flight holds a good state
    kept = checkpoint.steps(self.saver.mngr)
    return f"kept the last good checkpoint (step {kept[-1]})" if kept else "no checkpoint was saved"

  def check(self, calls=None):
    """Reads the flags of the first `calls` recorded calls (None: all); raises
    `NonFiniteLoss` at the first bad step."""
    calls = len(self.unchecked) if calls is None else calls
    for bad_step in self.unchecked[:calls]:
      if int(bad_step) >= 0:
        raise errors.NonFiniteLoss(f"non-finite loss at step {int(bad_step)}; {self._last_kept()}")
    self.unchecked = self.unchecked[calls:]

  def check_eval(self, ev, step):
    """Raises `NonFiniteLoss` when an evaluation of the state at `step` is not finite."""
    if not all(np.isfinite(float(v)) for v in ev.values()):
      raise errors.NonFiniteLoss(f"non-finite eval loss after step {step}; {self._last_kept()}")

  def save(self, state, meta):
    """Checkpoints `state` once its losses and variables are known to be finite."""
    self.check()
    if not _all_finite(train_state.variables(state)):
      raise errors.NonFiniteLoss(f"non-finite parameters at step {int(state.step)}; "
                                 f"{self._last_kept()}")
    self.saver.save(state, meta)


LOCK = ".lock"


def _alive(owner):
  """Whether the process named in a lock may still run (a process on another host: assumed so)."""
  if owner.get("host") != socket.gethostname():
    return True
  try:
    os.kill(int(owner["pid"]), 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # it exists, under another user
    return True
  return True


class WorkdirLock:
  """WORKDIR/.lock ({host, pid, since}) while a run holds the workdir; process 0 takes it.

  A second launch raises `UserError` naming the owner; a lock left by a process of this
  host that no longer runs (kill -9) is taken over with a warning. A workdir this lock had
  to create is removed again if nothing else was written to it.
  """

  def __init__(self, workdir):
    self.path, self.owned, self.made_dir = os.path.join(workdir, LOCK), False, False

  def __enter__(self):
    if not distributed.is_primary():
      return self
    workdir = os.path.dirname(self.path)
    self.made_dir = not os.path.isdir(workdir)
    os.makedirs(workdir, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        self._take_over_if_stale()
        continue
      with os.fdopen(fd, "w") as f:
        json.dump(me, f)
      self.owned = True
      return self

  def _take_over_if_stale(self):
    try:
      with open(self.path) as f:
        owner = json.load(f)
    except FileNotFoundError:  # its owner just let it go
      return
    except (OSError, ValueError):  # being written right now, or garbage
      try:
        young = time.time() - os.path.getmtime(self.path) < 10
      except FileNotFoundError:
        return
      if young:
        time.sleep(0.5)
        return
      owner = {"host": "?", "pid": "?"}
      stale = True
    else:
      stale = not _alive(owner)
    if not stale:
      raise errors.UserError(
          f"{os.path.dirname(self.path)} is in use by pid {owner.get('pid')} on "
          f"{owner.get('host')} (since {owner.get('since')}); wait for that run to end, or "
          f"delete {self.path} if it is no longer running")
    print(f"warning: taking over the stale lock {self.path} of pid {owner.get('pid')} on "
          f"{owner.get('host')}, which no longer runs", file=sys.stderr, flush=True)
    try:
      os.remove(self.path)
    except FileNotFoundError:
      pass

  def __exit__(self, *exc):
    if not self.owned:
      return
    os.remove(self.path)
    workdir = os.path.dirname(self.path)
    if self.made_dir and not os.listdir(workdir):
      os.rmdir(workdir)
