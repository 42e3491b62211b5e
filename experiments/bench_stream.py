"""Streaming against in-memory training, and the memory a streamed epoch of a big set takes.

1. Rate: `python -m ae_jax.main --config=configs/mlp.py` (report 004's MLP) at batch 256 on a
   60,000-image uint8 .npy (mnist_5k's images, each copy shifted by up to ±2 px), with
   `--config.stream=False` and `=True`; seconds per epoch from the wall difference of a
   `long`- and a `short`-epoch run (start-up and compile cancel), rounds interleaved, medians.
2. Memory: one epoch of the same command on a 500,000×32×32×3 uint8 .npy (1.5 GB on disk,
   6 GB as float32), streamed (`--config.stream=True`), then `ae_jax.embed` of all of it:
   each process's peak RSS (VmHWM) against the file's size.

    python -m experiments.bench_stream                   # both, about 10 minutes
    python -m experiments.bench_stream --cases=rate --rounds=1
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from experiments import bench_command, common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shifted_copies(n, seed=0):
  """n uint8 28×28×1 images: mnist_5k's, each copy shifted by up to ±2 px."""
  from ae_jax import data  # pylint: disable=g-import-not-at-top
  base = data.load("mnist_5k").images
  rng = np.random.default_rng(seed)
  out = np.empty((n, *base.shape[1:]), np.uint8)
  for lo in range(0, n, len(base)):
    k = min(len(base), n - lo)
    dy, dx = rng.integers(-2, 3, 2)
    out[lo:lo + k] = np.roll(base[:k], (dy, dx), axis=(1, 2))
  return out


def big_npy(path, n, shape=(32, 32, 3), seed=0):
  """Writes an n×H×W×C uint8 .npy chunk by chunk (never whole in memory): smooth blobs."""
  mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *shape))
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:shape[0], :shape[1]]
  for lo in range(0, n, 10_000):
    k = min(10_000, n - lo)
    cy, cx = rng.uniform(4, shape[0] - 4, (2, k, 1, 1))
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
    mm[lo:lo + k] = (blob[..., None] * rng.uniform(60, 255, (k, 1, 1, shape[2]))).astype(np.uint8)
  mm.flush()
  del mm


def rate(npy, rounds, short, long):
  """{'memory': [s/epoch], 'stream': [s/epoch]}, rounds interleaved."""
  out = {"memory": [], "stream": []}
  for _ in range(rounds):
    for side, flag in (("memory", "False"), ("stream", "True")):
      args = [f"--config.dataset=npy:{npy}", f"--config.stream={flag}"]
      walls = [bench_command.command_seconds(256, e, args) for e in (short, long)]
      out[side].append((walls[1] - walls[0]) / (long - short))
  return out


def peak_rss(module_args):
  """(peak RSS bytes, wall seconds, stdout) of `python -m MODULE ARGS` (VmHWM, polled)."""
  t = time.perf_counter()
  proc = subprocess.Popen([sys.executable, "-m", *module_args], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  peak = 0
  while proc.poll() is None:
    try:
      status = open(f"/proc/{proc.pid}/status").read()
      peak = max(peak, int(status.split("VmHWM:")[1].split()[0]) * 1024)
    except (OSError, IndexError):
      pass
    time.sleep(0.2)
  out = proc.stdout.read()
  if proc.returncode != 0:
    raise SystemExit(f"{module_args[0]} failed:\n{out[-3000:]}")
  return peak, time.perf_counter() - t, out


def big_epoch_and_embed(npy, tmp):
  """Rows (what, peak RSS, wall) of one streamed MLP epoch on `npy`, then its embedding."""
  workdir = os.path.join(tmp, "big_run")
  train = peak_rss(["ae_jax.main", "--config=configs/mlp.py", f"--workdir={workdir}",
                    f"--config.dataset=npy:{npy}", "--config.num_epochs=1",
                    "--config.batch_size=256", "--config.stream=True"])
  embed = peak_rss(["ae_jax.embed", f"--workdir={workdir}", f"--output={tmp}/z.npy"])
  return [("train one epoch, streamed", *train[:2]), ("ae_jax.embed of every image", *embed[:2])]


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cases", default="rate,rss")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--short", type=int, default=1)
  p.add_argument("--long", type=int, default=4)
  p.add_argument("--big_n", type=int, default=500_000)
  args = p.parse_args()
  cases = args.cases.split(",")
  print(common.machine(), flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    if "rate" in cases:
      npy = os.path.join(tmp, "x60k.npy")
      np.save(npy, shifted_copies(60_000))
      r = rate(npy, args.rounds, args.short, args.long)
      med = {k: statistics.median(v) for k, v in r.items()}
      print("| path | s/epoch (54,000 train images, batch 256) | rate vs in-memory |\n|---|---|---|")
      print(f"| in memory | {med['memory']:.3f} | 100% |")
      print(f"| streamed | {med['stream']:.3f} | {100 * med['memory'] / med['stream']:.0f}% |")
      print(f"medians of {args.rounds} interleaved rounds; per-round s/epoch: {r}", flush=True)
    if "rss" in cases:
      npy = os.path.join(tmp, "big.npy")
      big_npy(npy, args.big_n)
      size = os.path.getsize(npy)
      print(f"\n{args.big_n:,}×32×32×3 uint8: {size / 2**30:.2f} GiB on disk, "
            f"{4 * size / 2**30:.1f} GiB as float32\n\n| command | peak RSS GiB | wall s |\n|---|---|---|")
      for what, peak, wall in big_epoch_and_embed(npy, tmp):
        print(f"| {what} | {peak / 2**30:.2f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
  main()
