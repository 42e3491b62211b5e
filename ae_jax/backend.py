"""The one hardware decision: how a model's convolutions, its GroupNorm, its Adam and its
steps per jitted call run, chosen from `jax.default_backend()`.

Accelerators (GPU, TPU) run flax's and optax's stock ops: `nn.Conv` on lax's convolution
(cuDNN, the TPU's matrix units), `nn.GroupNorm`, `optax.scale_by_adam`, and 32 steps per
call. XLA:CPU gets its workarounds, all from here: fastconv's matmul forms and a
loop-friendly backward pass for the convolutions (ae_jax/models/layers.py), a GroupNorm
from per-channel means, an Adam with one divide per element fewer, and one step per call
(XLA's own backward pass, no loop) for the residual AE, whose convolutions XLA:CPU runs
slowly inside a loop body. Outputs and gradients agree between the two to float32
rounding (tests/test_backend.py); parameters and checkpoints are the same.

    impl = backend.model_impl(config)          # Impl(conv=..., group_norm=...) for models.build
    k = backend.steps_per_call(config)         # config.steps_per_call, or the backend's choice
"""
from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ae_jax import models
from ae_jax.models import layers

STEPS_PER_CALL = 32  # steps per jitted call unless a config or the CPU table says otherwise
CPU_STEPS_PER_CALL = {"resnet": 1}  # model → steps per call on XLA:CPU


class Impl(NamedTuple):
  """How a model's layers run: `nn.Conv`'s `conv_general_dilated` (None: lax's) and the
  GroupNorm module class."""
  conv: Optional[Callable]
  group_norm: Callable


STOCK = Impl(conv=None, group_norm=nn.GroupNorm)  # accelerators: flax's own


def _on_cpu(platform):
  return (platform or jax.default_backend()) == "cpu"


def steps_per_call(config, platform=None):
  """`config.steps_per_call` when set (> 0), else this backend's choice for the model."""
  if config.steps_per_call > 0:
    return config.steps_per_call
  if not _on_cpu(platform):
    return STEPS_PER_CALL
  return CPU_STEPS_PER_CALL.get(models.ALIASES.get(config.model, config.model), STEPS_PER_CALL)


def model_impl(config, platform=None):
  """The layers' implementation for `config`'s model on `platform` (default: JAX's backend)."""
  if not _on_cpu(platform):
    return STOCK
  in_loop = steps_per_call(config, platform) > 1  # the step runs inside a lax loop
  return Impl(conv=layers.cpu_conv_loop_safe if in_loop else layers.cpu_conv_xla_vjp,
              group_norm=layers.GroupNorm)


def scale_by_adam(platform=None):
  """Adam's scaling: optax's on accelerators, `cpu_scale_by_adam` (same state) on a CPU."""
  return cpu_scale_by_adam() if _on_cpu(platform) else optax.scale_by_adam()


def cpu_scale_by_adam(b1=0.9, b2=0.999, eps=1e-8):
  """`optax.scale_by_adam` with the same state and math, one divide per element fewer.

  optax divides by both bias corrections (x / c is not x · (1/c) in floating point, so XLA
  keeps the divides); here they are scalar reciprocals multiplied in, which leaves one
  divide and one sqrt per parameter. Agrees with optax to float32 rounding
  (tests/test_train.py); it pays where that per-parameter pass is compute-bound, small
  batches on a CPU (`python -m experiments.bench_train --cases= --ablate=mlp-8`).
  """
  def init_fn(params):
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32),
                                  mu=optax.tree.zeros_like(params), nu=optax.tree.zeros_like(params))

  def update_fn(grads, state, params=None):
    del params
    mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
    nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * (g * g), state.nu, grads)
    count = optax.safe_increment(state.count)
    t = count.astype(jnp.float32)
    c1, c2 = 1 / (1 - b1 ** t), 1 / (1 - b2 ** t)
    updates = jax.tree_util.tree_map(lambda m, v: (m * c1) / (jnp.sqrt(v * c2) + eps), mu, nu)
    return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)
