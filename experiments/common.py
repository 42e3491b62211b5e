"""Helpers shared by the report scripts: configs with overrides, training, result files.

    from experiments import common
    config = configs.load("mlp", num_epochs=50)
    state = common.train(config, "runs/report004/mlp")
    common.write_results("runs/report004", markdown_text, {"key": 1})
"""
import argparse
import json
import os
import subprocess
import sys
import time


def train(config_, workdir):
  from ae_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  return train_lib.train_and_evaluate(config_, workdir)


def timed_train(config, workdir):
  """Trains (or resumes) a run; returns the seconds its training took when it was done
  (kept in WORKDIR/train_seconds.txt, so a rerun that reuses the run reports them)."""
  path = os.path.join(workdir, "train_seconds.txt")
  if os.path.exists(path):
    return float(open(path).read())
  t = time.perf_counter()
  train(config, workdir)
  seconds = time.perf_counter() - t
  with open(path, "w") as f:
    f.write(f"{seconds:.1f}")
  return seconds


def train_report_model(doc, name, out, epochs, dataset_help):
  """Parses --out/--epochs/--dataset, trains configs/NAME.py into OUT/NAME and restores it.

  Returns (args, workdir, train seconds, config, model, variables, dataset)."""
  import configs  # pylint: disable=g-import-not-at-top
  from ae_jax import checkpoint, data  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=doc.splitlines()[0])
  p.add_argument("--out", default=out)
  p.add_argument("--epochs", type=int, default=epochs)
  p.add_argument("--dataset", default="mnist_5k", help=dataset_help)
  args = p.parse_args()
  workdir = os.path.join(args.out, name)
  t0 = time.perf_counter()
  train(configs.load(name, num_epochs=args.epochs, dataset=args.dataset), workdir)
  seconds = time.perf_counter() - t0
  config, model, variables, _ = checkpoint.load_for_inference(workdir)
  return args, workdir, seconds, config, model, variables, data.load(config.dataset, config.data_dir)


def metrics(workdir):
  from ae_jax import report  # pylint: disable=g-import-not-at-top
  return report.read_metrics(workdir)


def last(workdir, key):
  return [m[key] for m in metrics(workdir) if key in m][-1]


def write_results(out, markdown, payload):
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(markdown)
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(payload, f, indent=2, default=float)
  print(markdown, flush=True)


def machine():
  """CPU model, core count and AVX-512 support, from /proc/cpuinfo."""
  try:
    info = open("/proc/cpuinfo").read()
  except OSError:
    return f"cpu: unknown, {os.cpu_count()} cores"
  model = next((l.split(":", 1)[1].strip() for l in info.splitlines()
                if l.startswith("model name")), "unknown")
  flags = next((l.split(":", 1)[1].split() for l in info.splitlines()
                if l.startswith("flags")), [])
  return f"cpu: {model}, {os.cpu_count()} cores, avx512f: {'yes' if 'avx512f' in flags else 'no'}"


_PROBE = """
import sys, time, numpy as np
n = 2048
a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
for _ in sys.stdin:
  best = 1e9
  for _ in range(4):
    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
  print(2 * n ** 3 / best / 1e9, flush=True)
"""


class MatmulProbe:
  """NumPy float32 2048² matmul rate (best of 4), asked for between timing windows so it sees
  the same background load. A child process, with OpenBLAS free to pick its own kernel
  (OPENBLAS_CORETYPE, set on some machines, pins an older, slower one)."""

  def __init__(self):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    self.proc = subprocess.Popen([sys.executable, "-c", _PROBE], env=env, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)

  def gflops(self):
    self.proc.stdin.write("\n")
    self.proc.stdin.flush()
    return float(self.proc.stdout.readline())

  def close(self):
    self.proc.stdin.close()
    self.proc.wait()
