"""The whole training command against a plain PyTorch loop: steady-state seconds per epoch.

ae_jax: `python -m ae_jax.main --config=configs/mlp.py` on mnist_5k with
`--config.batch_size=B`, run for `short` and for `long` epochs in fresh workdirs; its
seconds per epoch are (loop_long - loop_short) / (long - short) of the training-loop seconds
the command prints, so compile and the last save cancel (start-up and plots lie outside)
and what is left is an epoch as the command runs it: the train steps, the eval, the
checkpoint saves and the log lines it does per epoch.
PyTorch: the same model (experiments/torch_reference.py), Adam, a reshuffled epoch and a
no-grad validation pass each epoch, timed over the same epochs in one process at 1 thread
and at every core (the better counts). Rounds interleave the sides; medians.

    python -m experiments.bench_command                        # batch 256 and 8, 3 rounds
    python -m experiments.bench_command --batches=256 --rounds=1 --args=--config.checkpoint.min_seconds=0

`python -m experiments.bench_train` prints these rows beside the bare-step ones.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import re
import time
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command_seconds(batch, epochs, extra_args=()):
  """Seconds of the training loop of one `ae_jax.main` run of configs/mlp.py for `epochs`
  epochs, as the command prints them ("trained N steps in S s": from the first call's
  dispatch to the last checkpoint written; the interpreter start and imports, whose
  seconds-long jitter would swamp a short epoch, are outside)."""
  with tempfile.TemporaryDirectory() as workdir:
    proc = subprocess.run(
        [sys.executable, "-m", "ae_jax.main", "--config=configs/mlp.py", f"--workdir={workdir}",
         f"--config.num_epochs={epochs}", f"--config.batch_size={batch}", *extra_args],
        cwd=ROOT, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    raise SystemExit(f"ae_jax.main failed:\n{proc.stderr[-3000:]}")
  return float(re.search(r"trained \d+ steps in ([\d.]+) s", proc.stdout)[1])


def torch_epoch_times(batch, epochs, threads):
  """Seconds at the end of each epoch of a plain PyTorch loop (train + val pass)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from configs import mlp  # pylint: disable=g-import-not-at-top
  from ae_jax import data, models  # pylint: disable=g-import-not-at-top
  from experiments import torch_reference  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  config = mlp.get_config()
  train, val = data.split(data.load("mnist_5k"), config.val_fraction, config.seed)
  as_t = lambda ds: torch.from_numpy(np.ascontiguousarray(  # noqa: E731
      data.as_unit(ds.images).transpose(0, 3, 1, 2)))
  x_train, x_val = as_t(train), as_t(val)
  net = torch_reference.build(models.build(config, train.image_shape))
  opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate, fused=True)
  spe = len(train) // batch
  t0, ends = time.perf_counter(), []
  for _ in range(epochs):
    loss = torch_reference.train_steps(net, opt, x_train, torch.randperm(len(train)), 0, spe,
                                       batch, config, (1.0, 0.0))
    with torch.no_grad():
      val_loss = sum(float(torch.nn.functional.mse_loss(net(x)["recon"], x, reduction="sum"))
                     for x in torch.split(x_val, config.eval_batch_size))
    float(loss), val_loss  # pylint: disable=expression-not-assigned
    ends.append(time.perf_counter() - t0)
  return ends


def torch_seconds_per_epoch(batch, short, long):
  """The better of 1 thread and every core, each in its own child process."""
  best = float("inf")
  for threads in sorted({1, os.cpu_count() or 1}):
    proc = subprocess.run([sys.executable, "-m", "experiments.bench_command",
                           f"--torch_child={batch},{long},{threads}"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
      raise SystemExit(f"the PyTorch loop failed:\n{proc.stderr[-3000:]}")
    ends = json.loads(proc.stdout.strip().splitlines()[-1])
    best = min(best, (ends[long - 1] - ends[short - 1]) / (long - short))
  return best


def rows(batches, rounds=3, short=2, long=32, extra_args=(), probe=None):
  """Per batch size: ae_jax and PyTorch seconds per epoch (medians), their ratio, and the
  NumPy matmul rate read between the rounds (`probe`: a `common.MatmulProbe`)."""
  out = []
  for batch in batches:
    ours, theirs, matmul = [], [], []
    for _ in range(rounds):
      loop_short = command_seconds(batch, short, extra_args)
      loop_long = command_seconds(batch, long, extra_args)
      ours.append((loop_long - loop_short) / (long - short))
      theirs.append(torch_seconds_per_epoch(batch, short, long))
      if probe is not None:
        matmul.append(probe.gflops())
    out.append({"case": f"command mlp-{batch}", "batch": batch, "jax_s_per_epoch": ours,
                "torch_s_per_epoch": theirs, "matmul_gflop_s": matmul,
                "ratio": statistics.median(t / o for o, t in zip(ours, theirs))})
  return out


def format_rows(results):
  """A markdown table: seconds per epoch on each side and PyTorch / ae_jax."""
  med = statistics.median
  lines = ["| case | batch | ae_jax s/epoch | PyTorch s/epoch | ratio | NumPy matmul GFLOP/s |",
           "|---|---|---|---|---|---|"]
  matmul = lambda r: f"{min(r['matmul_gflop_s']):.0f}–{max(r['matmul_gflop_s']):.0f}" if (
      r.get("matmul_gflop_s")) else "–"
  lines += [f"| {r['case']} | {r['batch']} | {med(r['jax_s_per_epoch']):.3f} | "
            f"{med(r['torch_s_per_epoch']):.3f} | {r['ratio']:.2f}× | {matmul(r)} |"
            for r in results]
  return "\n".join(lines)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batches", default="256,8")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--short", type=int, default=2)
  p.add_argument("--long", type=int, default=32)
  p.add_argument("--args", default="", help="comma-separated extra ae_jax.main flags")
  p.add_argument("--torch_child", default="", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.torch_child:
    batch, epochs, threads = map(int, args.torch_child.split(","))
    print(json.dumps(torch_epoch_times(batch, epochs, threads)))
    return
  from experiments import common  # pylint: disable=g-import-not-at-top
  print(common.machine(), flush=True)
  probe = common.MatmulProbe()
  results = rows([int(b) for b in args.batches.split(",")], args.rounds, args.short, args.long,
                 [a for a in args.args.split(",") if a], probe)
  probe.close()
  print(format_rows(results))
  print(f"\nratio = PyTorch / ae_jax seconds per epoch (> 1: ae_jax faster), median of "
        f"{args.rounds} interleaved rounds; an epoch = the difference of the {args.long}- and "
        f"{args.short}-epoch runs' training-loop seconds / {args.long - args.short}")


if __name__ == "__main__":
  main()
