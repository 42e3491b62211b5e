"""The MLP step's matmuls alone: how close XLA:CPU gets to the machine's matmul rate.

bench_train reports the MLP's whole step as a share of a NumPy float32 2048² matmul. This
times each large matmul of that step by itself — report 004's 784→392 and 392→784 layers
at one batch size: forward `x @ W`, input gradient `dy @ Wᵀ`, kernel gradient `xᵀ @ dy` —
as XLA runs it (jitted, many per call, inputs on device) and as NumPy runs it, interleaved
with the 2048² probe, so the step's share can be read against what its parts reach.

    python -m experiments.bench_matmul                 # batch 256, about 30 s
    python -m experiments.bench_matmul --batch=8 --rounds=5
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ae_jax import steps
from experiments.common import MatmulProbe

_REPS = 64  # matmuls per jitted call


def _forms(batch):
  """name → (lhs shape, rhs shape, transpose lhs, transpose rhs) of the step's big matmuls."""
  forms = {}
  for n_in, n_out in ((784, 392), (392, 784)):
    tag = f"{n_in}→{n_out}"
    forms[f"{tag} forward x @ W"] = ((batch, n_in), (n_in, n_out), False, False)
    forms[f"{tag} input grad dy @ Wᵀ"] = ((batch, n_out), (n_in, n_out), False, True)
    forms[f"{tag} kernel grad xᵀ @ dy"] = ((batch, n_in), (batch, n_out), True, False)
  return forms


def _xla_timer(shape_a, shape_b, ta, tb):
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal(shape_a, np.float32))
  b = jnp.asarray(rng.standard_normal(shape_b, np.float32))
  mm = lambda a, b: (a.T if ta else a) @ (b.T if tb else b)

  def body(_, carry):  # each matmul reads one element of the last, so none is hoisted
    a, out = carry
    a = a.at[0, 0].add(out[0, 0] * 1e-30)
    return a, mm(a, b)

  # compiled as the train step is (steps' CPU options)
  run = jax.jit(lambda a, b: jax.lax.fori_loop(0, _REPS, body, (a, mm(a, b)))[1],
                compiler_options=steps._cpu_options())  # pylint: disable=protected-access
  jax.block_until_ready(run(a, b))

  def timed():
    t0 = time.perf_counter()
    jax.block_until_ready(run(a, b))
    return (time.perf_counter() - t0) / _REPS
  return timed


def _numpy_timer(shape_a, shape_b, ta, tb):
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal(shape_a, np.float32), rng.standard_normal(shape_b, np.float32)
  a, b = (a.T if ta else a), (b.T if tb else b)

  def timed():
    t0 = time.perf_counter()
    for _ in range(_REPS):
      a @ b
    return (time.perf_counter() - t0) / _REPS
  return timed


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median, best of 3 each)")
  args = p.parse_args()
  probe = MatmulProbe()
  timers = {}
  for name, (sa, sb, ta, tb) in _forms(args.batch).items():
    flops = 2 * args.batch * 784 * 392  # every form: batch × 784 × 392 multiply-adds
    timers[name] = (flops, _xla_timer(sa, sb, ta, tb), _numpy_timer(sa, sb, ta, tb))
  rates = {k: ([], []) for k in timers}
  probes = []
  for _ in range(args.rounds):
    for name, (flops, xla, npy) in timers.items():
      rates[name][0].append(flops / min(xla() for _ in range(3)) / 1e9)
      rates[name][1].append(flops / min(npy() for _ in range(3)) / 1e9)
    probes.append(probe.gflops())
  probe.close()
  ref = statistics.median(probes)
  lines = [f"| matmul (batch {args.batch}) | XLA GFLOP/s | % of 2048² probe | NumPy GFLOP/s |",
           "|---|---|---|---|"]
  for name, (xla, npy) in rates.items():
    x = statistics.median(xla)
    lines.append(f"| {name} | {x:.0f} | {100 * x / ref:.0f}% | {statistics.median(npy):.0f} |")
  print("\n".join(lines) + f"\n\nNumPy float32 2048² probe: {ref:.0f} GFLOP/s (median of "
        f"{args.rounds}); JAX {jax.__version__}")


if __name__ == "__main__":
  main()
