"""Jitted training and evaluation: several steps per call, state donated, data on device.

The training images live on device (replicated, put there once); each call gathers its
batches by the epoch's seeded permutation and runs `num_steps` optimizer steps in a
`lax.fori_loop` whose trip count is traced (one compiled program for every call length), or
one step without a loop when `steps_per_call` is 1.
The permutation is threaded through the calls and redrawn inside the loop only when an
epoch starts (not a sort of the whole training set per call: costly at small batches;
experiments/README.md#training-speed-ae_jax-vs-pytorch-bench_trainpy). The state is donated
and nothing is read back per step: the call
returns the first step whose loss was not finite (or -1), and the loss sums sit in the state.

Data parallel: `make_mesh` spans every device (all hosts) with one `data` axis; params and
optimizer state are replicated, each batch is sharded along `data`, and XLA inserts the
gradient all-reduce, so the result equals one device's up to float summation order.

Mixed precision (`config.half_precision`): params and inputs are cast to bfloat16 inside
the loss function, so the forward and backward passes run in bf16 while the master params,
the optimizer state, the gradients and every loss reduction stay float32. Meant for
accelerators with bf16 units; on a CPU it is slower (see experiments/README.md).

    mesh = steps.make_mesh(config.batch_size)
    state, images = steps.replicate((state, images_NHWC), mesh)
    train_call = steps.make_train_call(model, tx, config, n_train=4500, mesh=mesh)
    perm = steps.epoch_order(config, 4500, int(state.step), mesh)
    state, perm, bad_step = train_call(state, perm, images, 8, False)
    evaluate = steps.make_eval(model, config, mesh)
    metrics = evaluate(variables, val_images)          # {'eval_loss', 'mse', ...}
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ae_jax import backend, data, errors, losses, train_state
from ae_jax.models import layers


def make_mesh(batch_size):
  """A 1-D mesh over every device, axis `data`; the batch must split evenly across it."""
  devices = np.array(jax.devices())
  if batch_size % len(devices):
    raise errors.UserError(f"batch_size {batch_size} is not divisible by the {len(devices)} "
                           f"devices; use a multiple of {len(devices)}")
  return Mesh(devices, ("data",))


def replicate(tree, mesh):
  """Places arrays replicated on every device of the mesh (do this to state and data once).

  With several processes (multi-host) each one passes the same host values and only its
  own devices are written."""
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(a):
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

  return jax.tree_util.tree_map(put, tree)


class _HalfPrecision:
  """Wraps a Linen module: params and float inputs cast to bf16 on the way in, float
  outputs back to f32 on the way out (other collections, e.g. batch_stats, untouched)."""

  def __init__(self, model):
    self.model = model
    self.pixel_range = model.pixel_range

  def apply(self, variables, x, **kwargs):
    to = lambda dtype: lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
    variables = {**variables, "params": jax.tree_util.tree_map(to(jnp.bfloat16), variables["params"])}
    res = self.model.apply(variables, to(jnp.bfloat16)(x), **kwargs)
    if kwargs.get("mutable"):
      out, mutated = res
      return jax.tree_util.tree_map(to(jnp.float32), out), mutated
    return jax.tree_util.tree_map(to(jnp.float32), res)


def compute_model(model, config):
  """The module the loss calls: `model` itself, or its bf16 wrapper under half_precision."""
  return _HalfPrecision(model) if config.get("half_precision", False) else model


def _shard_batch(x, mesh):
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P("data")))


# XLA:CPU options for the train call (measured in
# experiments/README.md#training-speed-ae_jax-vs-pytorch-bench_trainpy):
# - region analysis lets copy insertion see that a parameter's last read precedes its
#   in-place update; without it every step copies the kernels the backward pass reads.
# - 512-bit vectors for the elementwise loops (the optimizer update, activations) where the
#   CPU has them (LLVM keeps 256 by default; a CPU without AVX-512 ignores the preference).
_CPU_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True,
                "xla_cpu_prefer_vector_width": 512}
# Where a model's convolutions take XLA's own backward pass (the residual AE, one step per
# call): YNNPACK for the matmuls only, so the convolutions run on XLA's own kernels, faster
# for its 3×3 convs (step ≈ 1.05–1.09×). Not elsewhere: there it gains nothing, and an MLP's
# streamed and in-memory train calls would no longer round alike.
_XLA_CONV_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def _cpu_options(model):
  if jax.default_backend() != "cpu":
    return None
  opts = dict(_CPU_OPTIONS)
  if getattr(getattr(model, "impl", None), "conv", None) is layers.cpu_conv_xla_vjp:
    opts.update(_XLA_CONV_OPTIONS)
  return {k: v for k, v in opts.items() if _known_option(k, v)}


@functools.cache
def _known_option(key, value):
  """Whether this XLA takes the compiler option (the experimental ones come and go)."""
  try:
    jax.jit(lambda x: x).lower(0.0).compile({key: value})
    return True
  except Exception:  # pylint: disable=broad-except  # XLA raises its own error types
    return False


def _permutation_fn(config, n_train):
  """step → the training-set order of the epoch holding `step` (traceable)."""
  _, data_key, _ = train_state.seeds(config.seed)
  return lambda step: data.step_permutation(data_key, step, n=n_train, batch_size=config.batch_size)


def epoch_order(config, n_train, step, mesh):
  """The `perm` the first train call takes: the order of the epoch holding `step`, replicated."""
  return replicate(_permutation_fn(config, n_train)(step), mesh)


def make_train_call(model, tx, config, *, n_train, mesh, on_trace=None, streamed=False,
                    keep_best=None):
  """Returns train_call(state, perm, source, num_steps, zero_log_sums) → (state, perm, first
  bad step or -1): `num_steps` optimizer steps in one jitted call.

  `source` is the training set on device: the images N×H×W×C, or (images, labels) for a
  classifier; each step gathers its batch from every array of it. `streamed`: `source` is
  the call's batches instead, K×B×H×W×C (`stream.Batches`), step i of the call takes the
  i-th, and `perm` is passed through unread.

  The state is donated. `perm` is the training-set order of the epoch holding `state.step`:
  `epoch_order(...)` for the first call, the returned one after that. `zero_log_sums` zeroes the
  train-loss accumulators first (after a log line was read), so no host-side op touches the
  state between calls.

  `keep_best=(evaluate, schedule)` (a classifier with `eval.in_call`): the call evaluates
  inside its loop at every eval epoch end of the `periodic.Schedule` and keeps the state of
  the best accuracy so far, so a whole fit can be one call. It then takes and returns `best`
  too — `initial_best(state, acc, mesh)` for the first call — and takes the validation source:
  train_call(state, perm, source, num_steps, zero_log_sums, best, val_source) → (state, perm,
  bad step, best).

  With one step per call (`backend.steps_per_call`) the call has no loop around it: for
  models whose step is long enough that dispatching it is free, and whose convolutions
  XLA:CPU runs far slower inside a loop body (the residual AE on a CPU; ae_jax/backend.py).
  """
  steps_per_epoch = n_train // config.batch_size
  permutation = _permutation_fn(config, n_train)
  one_step = _make_step(compute_model(model, config), tx, config, mesh)
  track_best = _best_tracker(*keep_best) if keep_best else None

  @functools.partial(jax.jit, donate_argnums=(0, 5), compiler_options=_cpu_options(model))
  def train_call(state, perm, source, num_steps, zero_log_sums, best=None, val_source=None):
    if on_trace is not None:
      on_trace(state.step.shape)
    state = state.replace(log_sum=jnp.where(zero_log_sums, 0.0, state.log_sum),
                          log_count=jnp.where(zero_log_sums, 0, state.log_count))

    def body(i, carry):
      state, perm, bad_step, best = carry
      step = state.step
      if streamed:
        batch = jax.tree_util.tree_map(lambda a: a[i], source)
      else:
        perm = jax.lax.cond(step % steps_per_epoch == 0, permutation, lambda _: perm, step)
        idx = data.epoch_batch(perm, step, config.batch_size)
        batch = jax.tree_util.tree_map(lambda a: a[idx], source)
      state, loss = one_step(state, batch)
      if best is not None:
        best = track_best(best, state, val_source)
      return state, perm, jnp.where((bad_step < 0) & ~jnp.isfinite(loss), step, bad_step), best

    carry = (state, perm, jnp.full((), -1, jnp.int32), best)
    if backend.steps_per_call(config) == 1:  # one step, no loop around it (num_steps is 1)
      out = body(0, carry)
    else:  # num_steps is traced: one compiled program serves every call length.
      out = jax.lax.fori_loop(0, num_steps, body, carry)
    return out if best is not None else out[:3]

  return train_call


def initial_best(state, acc, mesh):
  """The `best` a `keep_best` train call starts from: a copy of the (placed) `state` scored
  `acc` (the best accuracy kept so far, or -1), at step -1."""
  return {"state": jax.tree_util.tree_map(jnp.copy, state),
          **replicate({"acc": np.float32(acc), "step": np.int32(-1)}, mesh)}


def _best_tracker(evaluate, schedule):
  """track(best, state, val_source) → best: evaluates `state` when its step ends an eval epoch
  and keeps it if its accuracy beats the best's (traced; `initial_best` describes `best`)."""

  def evaluated(best, state, val_source):
    acc = evaluate(train_state.variables(state), val_source)["acc"]
    return jax.lax.cond(acc > best["acc"], lambda: {"state": state, "acc": acc, "step": state.step},
                        lambda: best)

  def track(best, state, val_source):
    due = schedule.at_epochs(state.step - 1, state.step, schedule.eval_every)
    return jax.lax.cond(due, evaluated, lambda b, *_: b, best, state, val_source)

  return track


def _make_step(model, tx, config, mesh):
  """one_step(state, batch) → (state, loss): one optimizer step on the batch of `state.step`."""

  def one_step(state, batch):
    batch = jax.tree_util.tree_map(lambda a: data.as_unit(_shard_batch(a, mesh)), batch)
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
      variables = {"params": params, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
      terms, new_vars = losses.terms(model, variables, batch, rng, config, train=True)
      means = {k: v.mean() for k, v in terms.items()}
      return losses.total(means, config), new_vars

    (loss, new_vars), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    state = state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, updates),
        batch_stats=new_vars.get("batch_stats", state.batch_stats), opt_state=opt_state,
        log_sum=state.log_sum + loss, log_count=state.log_count + 1)
    return state, loss

  return one_step


def make_eval(model, config, mesh):
  """Returns evaluate(variables, source) → dict of means over all examples (padded, masked);
  `source` as in `make_train_call`."""
  ndev = mesh.devices.size
  eval_batch = max(ndev, config.eval_batch_size // ndev * ndev)
  model = compute_model(model, config)

  @jax.jit
  def evaluate(variables, source):
    n = jax.tree_util.tree_leaves(source)[0].shape[0]
    size = min(eval_batch, -(-n // ndev) * ndev)
    batches = jax.tree_util.tree_map(lambda a: data.padded_batches(a, size)[0], source)
    mask = data.padded_batches(jax.tree_util.tree_leaves(source)[0], size)[1]

    def body(_, batch_and_mask):
      batch, m = batch_and_mask
      batch = jax.tree_util.tree_map(lambda a: data.as_unit(_shard_batch(a, mesh)), batch)
      terms, _ = losses.terms(model, variables, batch, jax.random.PRNGKey(0), config, train=False)
      return None, {k: jnp.sum(v * m) for k, v in terms.items()}

    _, sums = jax.lax.scan(body, None, (batches, mask))
    means = {k: v.sum() / n for k, v in sums.items()}
    means["eval_loss"] = losses.total(means, config)
    return means

  return evaluate
