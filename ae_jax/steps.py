"""Jitted training and evaluation: several steps per call, state donated, data on device.

The training images live on device (replicated); each call gathers its batches by
an epoch-seeded permutation, runs `num_steps` optimizer steps in a `lax.scan`, and
returns per-step losses. Batches are sharded along the mesh's `data` axis.

    chunk = steps.make_train_chunk(model, tx, config, n_train=4500, mesh=mesh)
    state, bad_step = chunk(state, images_NHWC, 8, False)
    evaluate = steps.make_eval(model, config, mesh)
    metrics = evaluate(variables, val_images_NHWC)     # {'eval_loss', 'mse', ...}
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ae_jax import data, errors, losses, train_state


def make_mesh(batch_size):
  devices = np.array(jax.devices())
  if batch_size % len(devices):
    raise errors.UserError(f"batch_size {batch_size} is not divisible by the {len(devices)} devices")
  return Mesh(devices, ("data",))


def replicate(tree, mesh):
  """Places arrays replicated on every device of the mesh (do this to state and data once)."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def _shard_batch(x, mesh):
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P("data")))


def make_train_chunk(model, tx, config, *, n_train, mesh, on_trace=None):
  """Returns chunk(state, images, num_steps, reset_log) → (state, first bad step or -1).

  The state is donated. `reset_log` zeroes the train-loss accumulators first (after a
  log line was read), so no host-side op touches the state between calls.
  """
  batch = config.batch_size
  steps_per_epoch = n_train // batch
  _, data_key, _ = train_state.seeds(config.seed)

  def one_step(state, images, perm):
    i = state.step % steps_per_epoch
    idx = jax.lax.dynamic_slice(perm, (i * batch,), (batch,))
    x = _shard_batch(images[idx], mesh)
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
      variables = {"params": params, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
      terms, new_vars = losses.per_example(model, variables, x, rng, config, train=True)
      means = {k: v.mean() for k, v in terms.items()}
      return losses.total(means, config), new_vars

    (loss, new_vars), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    state = state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, updates),
        batch_stats=new_vars.get("batch_stats", state.batch_stats), opt_state=opt_state,
        log_sum=state.log_sum + loss, log_count=state.log_count + 1)
    return state, loss

  @functools.partial(jax.jit, donate_argnums=0)
  def chunk(state, images, num_steps, reset_log):
    if on_trace is not None:
      on_trace(state.step.shape)
    state = state.replace(log_sum=jnp.where(reset_log, 0.0, state.log_sum),
                          log_count=jnp.where(reset_log, 0, state.log_count))
    perm = data.epoch_permutation(data_key, state.step // steps_per_epoch, n_train)

    def body(_, carry):
      state, bad_step = carry
      step = state.step
      state, loss = one_step(state, images, perm)
      return state, jnp.where((bad_step < 0) & ~jnp.isfinite(loss), step, bad_step)

    # num_steps is traced: one compiled program serves every chunk length.
    return jax.lax.fori_loop(0, num_steps, body, (state, jnp.full((), -1, jnp.int32)))

  return chunk


def make_eval(model, config, mesh):
  """Returns evaluate(variables, images) → dict of means over all images (padded, masked)."""
  ndev = mesh.devices.size
  eval_batch = max(ndev, config.eval_batch_size // ndev * ndev)

  @jax.jit
  def evaluate(variables, images):
    n = images.shape[0]
    xb, mb = data.padded_batches(images, min(eval_batch, -(-n // ndev) * ndev))

    def body(_, xm):
      x, m = xm
      terms, _ = losses.per_example(model, variables, _shard_batch(x, mesh),
                                    jax.random.PRNGKey(0), config, train=False)
      return None, {k: jnp.sum(v * m) for k, v in terms.items()}

    _, sums = jax.lax.scan(body, None, (xb, mb))
    means = {k: v.sum() / n for k, v in sums.items()}
    means["eval_loss"] = losses.total(means, config)
    return means

  return evaluate
