"""Training throughput: ae_jax's real train path against a plain PyTorch reference.

Same model, batch size and data (mnist_5k's training split) on both sides, measured in one
run with the two sides interleaved (the machine is shared; only ratios taken side by side
mean anything). ae_jax runs `steps.make_train_call` exactly as `train.py` does: images
resident on device, `steps_per_call` steps per jitted call, donated state, no host sync
until the end of a timing window. PyTorch runs eager, `Adam(fused=True)`, the same
gather-by-permutation batching. Also printed: ae_jax's compile time, its achieved GFLOP/s
(XLA's own count of one step's flops) and that as a share of a float32 matmul rate
measured with NumPy in the same run. Then the whole command (experiments/bench_command.py):
`ae_jax.main` seconds per epoch, evals, checkpoints and logs included, against a plain
PyTorch loop, at the batch sizes of `--command_batches`.

    pip install -r requirements-bench.txt
    python -m experiments.bench_train                      # every case + command rows, ~12 minutes
    python -m experiments.bench_train --command_batches=   # bare steps only, about 4 minutes
    python -m experiments.bench_train --cases=mlp-8,mlp-256 --seconds=1 --rounds=3
    python -m experiments.bench_train --cases= --ablate=mlp-8,conv --rounds=5   # what each change gave
"""
import argparse
import contextlib
import importlib
import json
import math
import os
import statistics
import time
from unittest import mock

import jax
import numpy as np
import optax

from experiments import bench_command, common

from ae_jax import backend, data, models, steps, train_state  # pylint: disable=g-bad-import-order
from ae_jax.models import fastconv, layers

# name → (config module, config overrides); batch_size/steps_per_call not given = the
# config's own (or --steps_per_call).
CASES = {"mlp-8": ("mlp", {"batch_size": 8}),
         "mlp-8-spc64": ("mlp", {"batch_size": 8, "steps_per_call": 64}),
         "mlp-64": ("mlp", {"batch_size": 64}), "mlp-256": ("mlp", {"batch_size": 256}),
         "mlp-256-bf16": ("mlp", {"batch_size": 256, "half_precision": True}),
         "conv": ("conv", {}), "rotation": ("rotation", {})}


def load_config(module, overrides, steps_per_call):
  config = importlib.import_module(f"configs.{module}").get_config()
  if steps_per_call:
    config.steps_per_call = steps_per_call
  config.update_from_flattened_dict(overrides)
  return config


def _call_steps(config, steps_per_epoch, step):
  """Steps in the next call, cut at the epoch's end as train.py does."""
  return min(backend.steps_per_call(config), steps_per_epoch - step % steps_per_epoch)


class JaxSide:
  """ae_jax's train path: one compiled chunk, the state flowing through donated calls."""

  def __init__(self, config, images):
    self.config, self.n = config, len(images)
    self.model = models.build(config, images.shape[1:])
    self.spe = self.n // config.batch_size
    self.tx = train_state.optimizer(config, self.spe)
    self.mesh = steps.make_mesh(config.batch_size)
    self.state, self.images = steps.replicate(
        (train_state.create(config, self.model, self.tx, images.shape[1:]), images), self.mesh)
    self.traces = []
    self.chunk = steps.make_train_call(self.model, self.tx, config, n_train=self.n,
                                        mesh=self.mesh, on_trace=self.traces.append)
    self.step = 0
    self.perm = steps.epoch_order(config, self.n, 0, self.mesh)
    t0 = time.perf_counter()
    jax.block_until_ready(self.run_calls(1))
    self.compile_s = time.perf_counter() - t0
    self.num_params = models.count_params(self.state.params)

  def flops_per_step(self):
    """XLA's flop count of the chunk, whose loop body (one step) it counts once."""
    cost = self.chunk.lower(self.state, self.perm, self.images,
                            backend.steps_per_call(self.config), False)
    cost = cost.cost_analysis()
    return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])

  def run_calls(self, calls):
    """`calls` train calls cut at epoch ends as train.py does; returns the steps run."""
    done, bad = 0, None
    for _ in range(calls):
      k = _call_steps(self.config, self.spe, self.step)
      self.state, self.perm, bad = self.chunk(self.state, self.order(), self.images, k, False)
      self.step += k
      done += k
    jax.block_until_ready(bad)
    return done

  def order(self):
    """The epoch order the next call takes: the one the last call returned."""
    return self.perm


class SortPerCall(JaxSide):
  """The train path as it was: the epoch's order drawn again (a sort) before every call."""

  def order(self):
    return steps.epoch_order(self.config, self.n, self.step, self.mesh)


def _replaced(config):
  """name → (side class, patch, config overrides) for the versions of the train path ae_jax
  replaced."""
  same = contextlib.nullcontext()
  variants = {"sort per call": (SortPerCall, same, {}),
              "optax.scale_by_adam": (JaxSide, mock.patch.object(backend, "cpu_scale_by_adam",
                                                                 optax.scale_by_adam), {})}
  for name, option in (("XLA's default copy insertion", "xla_cpu_copy_insertion_use_region_analysis"),
                       ("LLVM's default 256-bit vectors", "xla_cpu_prefer_vector_width")):
    without = {k: v for k, v in steps._CPU_OPTIONS.items() if k != option}  # pylint: disable=protected-access
    variants[name] = (JaxSide, mock.patch.dict(steps._CPU_OPTIONS, without, clear=True), {})  # pylint: disable=protected-access
  if backend.model_impl(config).conv is layers.cpu_conv_xla_vjp:
    variants["YNNPACK convolutions (XLA's default)"] = (
        JaxSide, mock.patch.dict(steps._XLA_CONV_OPTIONS, {}, clear=True), {})  # pylint: disable=protected-access
  if config.model != "mlp":
    variants["matmul calls for K ≤ 9"] = (JaxSide, mock.patch.object(fastconv, "FMA_MAX_K", 0), {})
  if backend.steps_per_call(config) == 1:
    variants["loop-safe convs, 32 steps per call"] = (JaxSide, same, {"steps_per_call": 32})
  return variants


def ablate(case, images, seconds, rounds):
  """ae_jax against the versions of its train path it replaced, interleaved: a shuffle sort
  per call, optax's Adam (two divides per parameter), XLA:CPU's default copy insertion (a
  copy of every kernel the backward pass reads, each step), LLVM's default vector width,
  for conv models matmul calls for the one-channel layers' short contractions, and for a
  model on XLA's own convs YNNPACK running them too (XLA's default) and the loop-safe ones
  in a 32-step loop. Returns table lines."""
  module, case_overrides = CASES[case]
  config = lambda overrides=None: load_config(module, {**case_overrides, **(overrides or {})}, 0)
  sides = {"current": JaxSide(config(), images)}
  for name, (side, patch, overrides) in _replaced(config()).items():
    with patch:
      sides[name] = side(config(overrides), images)
  batch = config().batch_size
  calls = {k: _calibrate(side, seconds, batch)[0] for k, side in sides.items()}
  rates = {k: [] for k in sides}
  for _ in range(rounds):
    for k, side in sides.items():
      rates[k].append(_timed(side, calls[k], batch))
  med = {k: statistics.median(v) for k, v in rates.items()}
  lines = [f"| {case} variant | ae_jax ex/s | current is faster by |", "|---|---|---|"]
  lines += [f"| {k} | {v:,.0f} | {med['current'] / v:.2f}× |" for k, v in med.items()]
  return lines


class TorchSide:
  """The PyTorch reference: eager forward/backward/Adam over the same batches."""

  def __init__(self, config, images, flax_model):
    import torch  # pylint: disable=g-import-not-at-top
    from experiments import torch_reference  # pylint: disable=g-import-not-at-top
    self.torch, self.ref = torch, torch_reference
    torch.manual_seed(config.seed)
    self.config, self.n = config, len(images)
    self.spe = self.n // config.batch_size
    self.net = torch_reference.build(flax_model)
    self.num_params = sum(p.numel() for p in self.net.parameters())
    self.opt = torch.optim.Adam(self.net.parameters(), lr=config.learning_rate, fused=True)
    self.images = torch.from_numpy(np.ascontiguousarray(data.as_unit(images).transpose(0, 3, 1, 2)))
    self.scale = (1.0, 0.0) if flax_model.pixel_range.low == 0 else (2.0, -1.0)
    self.step, self.perm = 0, None
    self.run_calls(1)

  def threads(self, n):
    self.torch.set_num_threads(n)
    return self

  def run_calls(self, calls):
    """Same number of steps as JaxSide.run_calls (each 'call' = steps_per_call steps)."""
    done, loss = 0, None
    for _ in range(calls):
      k = _call_steps(self.config, self.spe, self.step)
      if self.step % self.spe == 0:
        self.perm = self.torch.randperm(self.n)
      loss = self.ref.train_steps(self.net, self.opt, self.images, self.perm, self.step % self.spe,
                                  k, self.config.batch_size, self.config, self.scale)
      self.step += k
      done += k
    float(loss)
    return done


def _calibrate(side, seconds, batch):
  """(calls per timing window, [the calibration's examples/s])."""
  t0 = time.perf_counter()
  steps_run = side.run_calls(2)
  elapsed = time.perf_counter() - t0
  return max(1, int(seconds / (elapsed / 2))), [steps_run * batch / elapsed]


def _timed(side, calls, batch):
  t0 = time.perf_counter()
  steps_run = side.run_calls(calls)
  return steps_run * batch / (time.perf_counter() - t0)


def bench_case(name, config, images, seconds, rounds, probe, with_torch):
  """Interleaved rounds: ae_jax, the matmul probe, PyTorch at 1 thread and at every core (its
  better rate counts: OpenMP's spinning threads lose badly when the cores are shared; a
  thread count under half the other's rate in calibration is not timed further)."""
  jx = JaxSide(config, images)
  batch = config.batch_size
  row = {"case": name, "model": config.model, "batch": batch,
         "steps_per_call": backend.steps_per_call(config), "params": jx.num_params,
         "compile_s": jx.compile_s, "mflop_per_example": jx.flops_per_step() / batch / 1e6}
  windows = {"jax": jx}
  if with_torch:
    th = TorchSide(config, images, jx.model)
    if th.num_params != jx.num_params:
      raise AssertionError(f"{name}: the PyTorch twin has {th.num_params} parameters, "
                           f"ae_jax's model {jx.num_params}")
    windows.update({"torch1": lambda: th.threads(1), f"torch{os.cpu_count()}":
                    lambda: th.threads(os.cpu_count())})
  side = lambda k: windows[k]() if callable(windows[k]) else windows[k]
  calls, rates = {}, {"matmul": []}
  for k in windows:
    calls[k], rates[k] = _calibrate(side(k), seconds, batch)
  torch_k = [k for k in windows if k.startswith("torch")]
  for k in torch_k:
    if rates[k][0] < 0.5 * max(rates[t][0] for t in torch_k):
      del windows[k]
  for k in windows:
    rates[k] = []
  for _ in range(rounds):
    for k in windows:
      rates[k].append(_timed(side(k), calls[k], batch))
    rates["matmul"].append(probe.gflops())
  med = statistics.median
  row["jax_ex_s"] = med(rates["jax"])
  gflops = [r * row["mflop_per_example"] / 1e3 for r in rates["jax"]]
  row["jax_gflop_s"] = med(gflops)
  row["matmul_gflop_s"] = med(rates["matmul"])
  row["pct_of_matmul"] = med(100 * g / m for g, m in zip(gflops, rates["matmul"]))
  if with_torch:
    best = [max(rates[k][i] for k in torch_k if k in windows) for i in range(rounds)]
    row["torch_ex_s"] = med(best)
    row["torch_threads"] = {k: round(med(rates[k])) for k in torch_k}
    row["ratio"] = med(j / t for j, t in zip(rates["jax"], best))
  row["raw"] = {k: [round(x) for x in v] for k, v in rates.items()}
  assert len(jx.traces) == 1, f"{name}: the train chunk was traced {len(jx.traces)} times"
  return row


def format_table(rows):
  head = ("| case | batch | steps/call | ae_jax ex/s | PyTorch ex/s | ratio | ae_jax compile s "
          "| MFLOP/example | ae_jax GFLOP/s | NumPy matmul GFLOP/s | % of matmul |")
  lines = [head, "|---" * head.count(" | ") + "|---|"]
  for r in rows:
    lines.append(
        f"| {r['case']} | {r['batch']} | {r['steps_per_call']} | {r['jax_ex_s']:,.0f} | "
        f"{r.get('torch_ex_s', math.nan):,.0f} | {r.get('ratio', math.nan):.2f}× | "
        f"{r['compile_s']:.1f} | {r['mflop_per_example']:.2f} | {r['jax_gflop_s']:.0f} | "
        f"{r['matmul_gflop_s']:.0f} | {r['pct_of_matmul']:.0f}% |")
  return "\n".join(lines)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {list(CASES)}")
  p.add_argument("--seconds", type=float, default=1.0, help="length of one timing window")
  p.add_argument("--rounds", type=int, default=3, help="interleaved windows per side (median)")
  p.add_argument("--steps_per_call", type=int, default=0, help="override config.steps_per_call")
  p.add_argument("--no_torch", action="store_true")
  p.add_argument("--ablate", default="", help="comma-separated cases to also time against "
                 "the train-path versions ae_jax replaced (optax's Adam, a sort per call, "
                 "default compiler options, matmul calls for short contractions)")
  p.add_argument("--command_batches", default="256,8",
                 help="comma-separated batch sizes of the whole-command rows ('' for none)")
  p.add_argument("--output", default="", help="also write results.json/results.md here")
  args = p.parse_args()
  cases = [c for c in args.cases.split(",") if c]
  ablated = [c for c in args.ablate.split(",") if c]
  unknown = set(cases + ablated) - set(CASES)
  if unknown:
    p.error(f"unknown cases {sorted(unknown)}")
  print(f"JAX {jax.__version__} on {jax.device_count()} {jax.devices()[0].platform} device(s); "
        f"{common.machine()}", flush=True)
  train_ds, _ = data.split(data.load("mnist_5k"), 0.1, 0)
  probe, rows, t_start = common.MatmulProbe(), [], time.perf_counter()
  for name in cases:
    config = load_config(*CASES[name], args.steps_per_call)
    t0 = time.perf_counter()
    rows.append(bench_case(name, config, train_ds.images, args.seconds, args.rounds, probe,
                           not args.no_torch))
    print(f"  {name}: {json.dumps({k: v for k, v in rows[-1].items() if k != 'case'})} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
  batches = [int(b) for b in args.command_batches.split(",") if b]
  command = bench_command.rows(batches, args.rounds, probe=probe) if batches else []
  matmul = probe.gflops()
  probe.close()
  table = format_table(rows) if rows else ""
  if command:
    table += "\n\n" + bench_command.format_rows(command)
  for case in ablated:
    table += "\n\n" + "\n".join(ablate(case, train_ds.images, args.seconds, args.rounds))
  print(f"\n{table}\n\nmedians of {args.rounds} interleaved rounds; ratio = ae_jax / the better "
        f"of PyTorch at 1 and {os.cpu_count()} threads (command rows: PyTorch / ae_jax seconds "
        f"per epoch); NumPy matmul {matmul:.0f} GFLOP/s; {time.perf_counter() - t_start:.0f} s in all")
  if args.output:
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "results.json"), "w") as f:
      json.dump({"rows": rows, "command_rows": command, "machine": common.machine(),
                 "matmul_gflop_s": matmul}, f, indent=2)
    with open(os.path.join(args.output, "results.md"), "w") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  main()
