"""The train-state pytree and its optimizer, built from a config.

    model = models.build(config, image_shape)
    tx = train_state.optimizer(config, steps_per_epoch=17)
    state = train_state.create(config, model, tx, image_shape)
"""
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from ae_jax import backend, models


@flax.struct.dataclass
class TrainState:
  """Everything a run resumes from: one pytree, saved whole in each checkpoint."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # base key: step randomness is fold_in(rng, step), never carried
  log_sum: jax.Array  # train-loss sum and count since the last log line (kept for exact resume)
  log_count: jax.Array


def variables(state):
  """The Linen variables dict (params, and batch_stats where the model has them)."""
  v = {"params": state.params}
  if state.batch_stats:
    v["batch_stats"] = state.batch_stats
  return v


def _adam(config, learning_rate):
  """Adam (PyTorch L2 semantics) or AdamW at `learning_rate`, as a list of transforms."""
  if config.optimizer == "adam":
    parts = [optax.add_decayed_weights(config.weight_decay)] if config.weight_decay else []
    return parts + [backend.scale_by_adam(), optax.scale(-learning_rate)]
  if config.optimizer == "adamw":
    return [optax.adamw(learning_rate, weight_decay=config.weight_decay)]
  raise ValueError(config.optimizer)


def optimizer(config, steps_per_epoch):
  """Adam (PyTorch L2 semantics) or AdamW, then ReduceLROnPlateau on the epoch-mean loss.

  A classifier's encoder (params['ae']) gets `encoder_lr_scale` times the head's rate,
  or no updates at all in mode 'frozen'."""
  parts = _adam(config, config.learning_rate)
  if config.get("task", "autoencode") == "classify":
    encoder = (optax.set_to_zero() if config.mode == "frozen" else
               optax.chain(*_adam(config, config.learning_rate * config.encoder_lr_scale)))
    parts = [optax.multi_transform(
        {"head": optax.chain(*parts), "ae": encoder},
        lambda params: {k: jax.tree_util.tree_map(lambda _: k, v) for k, v in params.items()})]
  if config.plateau.patience > 0:
    parts.append(optax.contrib.reduce_on_plateau(
        factor=config.plateau.factor, patience=config.plateau.patience,
        rtol=config.plateau.rtol, cooldown=config.plateau.cooldown,
        accumulation_size=steps_per_epoch))
  return optax.chain(*parts)


def lr_scale(opt_state):
  """The plateau scheduler's learning-rate scale (a device scalar), or 1.0 without one."""
  is_plateau = lambda x: isinstance(x, optax.contrib.ReduceLROnPlateauState)
  states = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=is_plateau) if is_plateau(s)]
  return states[0].scale if states else 1.0


def learning_rate(config, opt_state):
  """Current learning rate (host float): base rate times the plateau scheduler's scale."""
  return config.learning_rate * float(jax.device_get(lr_scale(opt_state)))


def seeds(seed):
  """(init, data, step) keys derived from one seed."""
  return jax.random.split(jax.random.PRNGKey(seed), 3)


def create(config, model, tx, image_shape):
  """The initial state, built in one jitted call (op-by-op init compiles dozens of programs)."""
  return jax.jit(lambda: _create(config, model, tx, image_shape))()


def _create(config, model, tx, image_shape):
  init_key, _, step_key = seeds(config.seed)
  variables_ = models.init(model, init_key, image_shape)
  params = variables_["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables_.get("batch_stats", {}),
                    opt_state=tx.init(params), rng=step_key,
                    log_sum=jnp.zeros((), jnp.float32), log_count=jnp.zeros((), jnp.int32))


def build_model(config, image_shape, num_classes=None):
  """The Linen module of a run: `models.build`, or for `task="classify"` the classifier
  (its AE's encoder + head) over `num_classes`."""
  if config.get("task", "autoencode") == "classify":
    from ae_jax import transfer  # pylint: disable=g-import-not-at-top
    return transfer.build(config, image_shape, num_classes)
  return models.build(config, image_shape)


def abstract_state(config):
  """(model, shape-only TrainState) from a run's config.json (which carries `derived`)."""
  image_shape = tuple(config.derived.image_shape)
  model = build_model(config, image_shape, config.derived.get("num_classes"))
  tx = optimizer(config, config.derived.steps_per_epoch)
  return model, jax.eval_shape(lambda: _create(config, model, tx, image_shape))
