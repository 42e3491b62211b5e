"""config.half_precision: bf16 compute, f32 master params and loss; it trains like f32."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae_jax import data, models, steps, train, train_state
from tests.conftest import tiny


def _train(config, n=512, calls=12):
  ds = data.load("mnist_5k").take(np.arange(n))
  model = models.build(config, ds.image_shape)
  tx = train_state.optimizer(config, n // config.batch_size)
  mesh = steps.make_mesh(config.batch_size)
  state, images = steps.replicate((train_state.create(config, model, tx, ds.image_shape), ds.images),
                                  mesh)
  evaluate = steps.make_eval(model, config, mesh)
  before = float(evaluate(train_state.variables(state), images)["eval_loss"])
  chunk = steps.make_train_call(model, tx, config, n_train=n, mesh=mesh)
  perm = steps.epoch_order(config, n, 0, mesh)
  for _ in range(calls):
    state, perm, bad = chunk(state, perm, images, 8, False)
  assert int(bad) == -1
  after = float(evaluate(train_state.variables(state), images)["eval_loss"])
  return state, before, after, model


@pytest.mark.parametrize("name,overrides", [("mlp", {}), ("mlp", {"model": "mlp_bn", "arch.batch_norm": True})])
def test_bf16_trains_like_f32_and_keeps_f32_params(name, overrides):
  cfg = dict(batch_size=32, **overrides)
  s16, before16, after16, _ = _train(tiny(name, half_precision=True, **cfg))
  _, before32, after32, _ = _train(tiny(name, half_precision=False, **cfg))
  assert {x.dtype for x in jax.tree_util.tree_leaves((s16.params, s16.opt_state))
          if jnp.issubdtype(x.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
  assert abs(before16 - before32) < 0.01 * before32  # same init, bf16 forward
  assert after16 < 0.7 * before16
  assert abs(after16 - after32) < 0.1 * after32, (after16, after32)


def test_bf16_really_computes_in_bf16():
  config = tiny(half_precision=True)
  model = steps.compute_model(models.build(config, (28, 28, 1)), config)
  variables = models.init(model.model, jax.random.PRNGKey(0), (28, 28, 1))
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
      variables, jnp.zeros((4, 28, 28, 1)))
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
  assert dots and all(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables,
                       jnp.zeros((4, 28, 28, 1)))
  assert out["recon"].dtype == jnp.float32


def test_half_precision_run_end_to_end(tmp_path):
  state = train.train_and_evaluate(tiny(half_precision=True), str(tmp_path))
  assert int(state.step) > 0
  assert (tmp_path / "metrics.jsonl").read_text().count("eval_loss") == 1
