"""Fault drill: kill training at random moments, rerun the same command, check it ends bit-exact.

One uninterrupted run of the config is the reference. Each trial starts the same
command (`python -m ae_jax.main`) on a fresh workdir and sends SIGTERM or SIGKILL (the
two alternate) at a random moment of the training phase (the first 90% of the time the
reference took from its `compiling` line to its exit: train calls, evals, checkpoint saves),
then reruns the command until it finishes. The trial passes when the newest
checkpoint's whole TrainState (params, batch stats, optimizer and plateau state, rng,
step) and `metrics.jsonl` are bit-identical to the reference's. Writes results.md and
results.json under --out.

    python -m experiments.fault_drill --out=runs/fault_drill
    python -m experiments.fault_drill --args=--config.checkpoint.min_seconds=0   # kills amid saves
"""
import argparse
import hashlib
import importlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np

from experiments import common

from ae_jax import checkpoint, models, train_state  # pylint: disable=g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Report 004's MLP (plateau scheduler on) with BatchNorm and Dropout, 30 epochs of 140 steps.
CONFIG_MODULE = "configs.mlp"
ARGS = [f"--config={CONFIG_MODULE.replace('.', '/')}.py", "--config.num_epochs=30",
        "--config.arch.batch_norm=True", "--config.arch.dropout=0.2"]


def run(workdir, log_path, sig=None, after=None):
  """Runs the command (output to `log_path`); sends `sig` `after` seconds into training.

  Returns (exit code, seconds from the start of training to the exit).
  """
  proc = subprocess.Popen([sys.executable, "-m", "ae_jax.main", f"--workdir={workdir}", *ARGS],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
  training, t0 = threading.Event(), [time.perf_counter()]

  def tee():
    with open(log_path, "a") as log:
      for line in proc.stdout:
        log.write(line)
        if line.startswith("compiling") and not training.is_set():
          t0[0] = time.perf_counter()
          training.set()

  reader = threading.Thread(target=tee)
  reader.start()
  while sig is not None and proc.poll() is None and not training.wait(0.02):
    pass
  try:
    proc.wait(timeout=after if sig is not None and training.is_set() else None)
  except subprocess.TimeoutExpired:
    proc.send_signal(sig)
  proc.wait()
  reader.join()
  return proc.returncode, time.perf_counter() - t0[0]


def sources():
  """Hash of the code a run executes (the ae_jax and configs modules it imports): the drill is
  only valid if that code does not change meanwhile."""
  config = importlib.import_module(CONFIG_MODULE).get_config()
  for name in ("ae_jax.main", "ae_jax.train", "ae_jax.transfer"):
    importlib.import_module(name)
  models.model_class(config.model)
  files = sorted(m.__file__ for m in list(sys.modules.values())
                 if (getattr(m, "__file__", None) or "").startswith(
                     (os.path.join(ROOT, "ae_jax"), os.path.join(ROOT, "configs"))))
  h = hashlib.sha256()
  for file in files:
    with open(file, "rb") as f:
      h.update(file.encode() + f.read())
  return h.hexdigest()


def fingerprint(workdir):
  """{leaf path: array} of the newest checkpoint's TrainState, plus the metrics file."""
  _, abstract = train_state.abstract_state(checkpoint.read_config(workdir))
  found = checkpoint.restore_newest(checkpoint.manager(workdir, create=False), abstract)
  state, step = found.state, found.step
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return step, {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}, f.read()


def same(a, b):
  (step_a, state_a, metrics_a), (step_b, state_b, metrics_b) = a, b
  return (step_a == step_b and metrics_a == metrics_b and state_a.keys() == state_b.keys()
          and all(np.array_equal(state_a[k], state_b[k]) for k in state_a))


def last_line(log_path, prefix):
  with open(log_path) as f:
    hits = [l.strip() for l in f if l.startswith(prefix)]
  return hits[-1] if hits else ""


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="runs/fault_drill")
  p.add_argument("--trials", type=int, default=5)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--args", default="", help="comma-separated extra flags of the command, e.g. "
                 "--config.checkpoint.min_seconds=0 (a checkpoint every epoch)")
  args = p.parse_args()
  ARGS.extend(a for a in args.args.split(",") if a)
  os.makedirs(args.out, exist_ok=True)
  for name in os.listdir(args.out):  # a previous drill's runs (nothing else is touched)
    if name.startswith(("reference", "trial")):
      path = os.path.join(args.out, name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      else:
        os.remove(path)
  code = sources()
  ref_dir = os.path.join(args.out, "reference")
  rc, ref_seconds = run(ref_dir, ref_dir + ".log")
  if rc != 0:
    sys.exit(f"the reference run failed (exit {rc}); see {ref_dir}.log")
  reference = fingerprint(ref_dir)
  print(f"reference: {reference[0]} steps, {ref_seconds:.1f} s from compiling to exit", flush=True)

  rng = random.Random(args.seed)
  signals = rng.sample([signal.SIGTERM, signal.SIGKILL], 2)  # alternate, random first
  trials = []
  for i in range(args.trials):
    workdir = os.path.join(args.out, f"trial{i + 1}")
    sig = signals[i % 2]
    after = rng.uniform(0, 0.9 * ref_seconds)  # the last tenth is mostly the final plots
    rc, _ = run(workdir, workdir + ".log", sig, after)
    saved = os.path.join(workdir, checkpoint.SUBDIR)
    names = os.listdir(saved) if os.path.isdir(saved) else []
    kept = sorted(int(n) for n in names if n.isdigit())
    partial = sorted(int(n.split(".")[0]) for n in names if n.endswith(".orbax-checkpoint-tmp"))
    stopped = last_line(workdir + ".log", "stopped by")
    rerun_rc, _ = run(workdir, workdir + ".rerun.log")
    resumed = last_line(workdir + ".rerun.log", "resuming from") or "started afresh"
    if sources() != code:
      sys.exit(f"the code under {ROOT} changed during the drill (trial {i + 1}); rerun it")
    ok = rerun_rc == 0 and same(reference, fingerprint(workdir))
    trials.append(dict(trial=i + 1, signal=sig.name, after_s=round(after, 1), exit=rc,
                       checkpoints=kept, half_written=partial, stopped=stopped, rerun=resumed,
                       bit_exact=ok))
    print(f"trial {i + 1}: {sig.name} {after:.1f} s into training (exit {rc}; checkpoints {kept}"
          f"{f', half-written {partial}' if partial else ''}) {stopped + ' ' if stopped else ''}"
          f"→ rerun: {resumed} → {'bit-exact' if ok else 'DIFFERENT'}", flush=True)

  passed = sum(t["bit_exact"] for t in trials)
  rows = [f"| {t['trial']} | {t['signal']} | {t['after_s']} | {t['exit']} | {t['checkpoints']} | "
          f"{t['half_written'] or ''} | {t['rerun']} | {'yes' if t['bit_exact'] else 'NO'} |"
          for t in trials]
  md = (f"# Fault drill\n\n`python -m ae_jax.main {' '.join(ARGS)}`: reference {reference[0]} "
        f"steps, {ref_seconds:.1f} s from `compiling` to exit.\n\n"
        "| trial | signal | s into training | exit | checkpoints then | half-written | rerun | "
        "bit-exact |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
        f"\n\n{passed}/{len(trials)} resumed bit-exact\n")
  common.write_results(args.out, md, {"args": ARGS, "reference_seconds": ref_seconds,
                                      "trials": trials, "passed": passed})
  sys.exit(0 if passed == len(trials) else 1)


if __name__ == "__main__":
  main()
