"""Run outputs: `metrics.jsonl`, TensorBoard events and a progress line.

    writer = report.MetricsWriter(workdir, resume_step=0)
    writer.write(120, {'train_loss': 0.031})     # one JSON line + TensorBoard scalars
    progress = report.Progress(total_steps=880, batch_size=256)
    progress.line(120, {'train_loss': 0.031}, epoch=3, num_epochs=50)
"""
import datetime
import json
import os
import time

from ae_jax import distributed

METRICS = "metrics.jsonl"


def read_metrics(workdir):
  """The run's metric lines from workdir/metrics.jsonl as dicts ([] if there is none)."""
  path = os.path.join(workdir, METRICS)
  if not os.path.isfile(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:  # a line cut short by a kill: the run redoes it
        pass
  return out


class MetricsWriter:
  """Appends metric lines; on resume drops lines past the restored step (they are redone).
  Process 0 alone writes."""

  def __init__(self, workdir, resume_step):
    self.path = os.path.join(workdir, METRICS)
    self._workdir, self._tb = workdir, None
    self.enabled = distributed.is_primary()  # one writer for the whole job
    if not self.enabled:
      return
    kept = [m for m in read_metrics(workdir) if m["step"] <= resume_step]
    with open(self.path + ".tmp", "w") as f:  # replaced atomically: a kill never loses history
      f.writelines(json.dumps(m) + "\n" for m in kept)
    os.replace(self.path + ".tmp", self.path)

  def write(self, step, metrics):
    """Appends one JSON line {'step', **metrics} and the same values as TensorBoard scalars."""
    if not self.enabled:
      return
    line = {"step": int(step), **{k: float(v) if not isinstance(v, int) else v for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(line) + "\n")
    if self._tb is None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(self._workdir)
    for k, v in line.items():
      if k != "step":
        self._tb.add_scalar(k, v, step)

  def close(self):
    """Flushes and closes the TensorBoard writer, if one was opened."""
    if self._tb is not None:
      self._tb.close()


class Progress:
  """Prints `step s/T (epoch e/E) loss … | ex/s | ETA` lines."""

  def __init__(self, total_steps, batch_size, start_step):
    self.total, self.batch = total_steps, batch_size
    self._t0, self._s0 = time.perf_counter(), start_step
    self._t_last, self._s_last = self._t0, start_step

  def restart_clock(self, step):
    """Call after the first (compiling) call so ex/s and ETA measure steady state."""
    self._t0 = self._t_last = time.perf_counter()
    self._s0 = self._s_last = step

  def line(self, step, metrics, *, epoch, num_epochs):
    """Prints one progress line for `step` (nothing if the step has not moved)."""
    now = time.perf_counter()
    if step == self._s_last:
      return
    rate = (step - self._s_last) * self.batch / max(now - self._t_last, 1e-9)
    overall = (step - self._s0) / max(now - self._t0, 1e-9)
    eta = (self.total - step) / overall if overall > 0 else 0.0
    self._t_last, self._s_last = now, step
    vals = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    print(f"step {step}/{self.total} (epoch {epoch}/{num_epochs}) {vals} | "
          f"{rate:,.0f} ex/s | ETA {datetime.timedelta(seconds=round(eta))}", flush=True)
