"""One model code, two implementations (ae_jax/backend.py): flax's stock layers on
accelerators, XLA:CPU's forms on a CPU. Same parameters, same outputs and gradients (to
float32 rounding: rtol 1e-4, atol 1e-5), and the accelerator step, lowered here, holds
plain convolutions only, in bf16 under `half_precision`."""
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import configs
from ae_jax import backend, models, steps, train_state
from ae_jax.models import layers

CASES = [("conv", (28, 28, 1), {}),
         ("rotation", (27, 30, 1), {"arch.widths": (8, 8), "arch.latent_dim": 8}),
         ("rotation", (32, 32, 3), {"arch.widths": (8, 16), "arch.latent_dim": 8})]
CPU_FORMS = {"cpu, in a loop": backend.Impl(layers.cpu_conv_loop_safe, layers.GroupNorm),
             "cpu, one step": backend.Impl(layers.cpu_conv_xla_vjp, layers.GroupNorm)}


def _model(name, shape, overrides, impl):
  config = configs.load(name, **overrides)
  return config, models.build(config, shape).clone(impl=impl)


@pytest.mark.parametrize("name,shape,overrides", CASES)
def test_cpu_forms_give_the_stock_layers_outputs_and_gradients(name, shape, overrides):
  config, stock = _model(name, shape, overrides, backend.STOCK)
  variables = models.init(stock, jax.random.PRNGKey(0), shape)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, size=(3, *shape)), jnp.float32)

  def loss_and_grads(model):
    def loss(params):
      out = model.apply({**variables, "params": params}, x)
      return jnp.mean((out["recon"] - x) ** 2) + jnp.mean(out.get("logits", 0.0) ** 2)
    return jax.jit(jax.value_and_grad(loss))(variables["params"])

  ref_loss, ref_grads = loss_and_grads(stock)
  for form, impl in CPU_FORMS.items():
    model = stock.clone(impl=impl)
    assert jax.tree_util.tree_structure(models.init(model, jax.random.PRNGKey(0), shape)) == \
        jax.tree_util.tree_structure(variables)  # the same parameters: checkpoints carry over
    l, g = loss_and_grads(model)
    np.testing.assert_allclose(l, ref_loss, rtol=1e-4, err_msg=form)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref_grads)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=form)


def _lowered_step(name, shape, overrides, impl, **config_overrides):
  config, model = _model(name, shape, {**overrides, "batch_size": 8, **config_overrides}, impl)
  tx = optax.adam(1e-3)
  mesh = steps.make_mesh(config.batch_size)
  state = train_state.create(config, model, tx, shape)
  images = jnp.zeros((16, *shape), jnp.float32)
  call = steps.make_train_call(model, tx, config, n_train=16, mesh=mesh)
  perm = steps.epoch_order(config, 16, 0, mesh)
  return call.lower(state, perm, images, 1, False).as_text()


def _ops(text, op):
  return [l for l in text.splitlines() if f"stablehlo.{op}" in l]


@pytest.mark.parametrize("name,shape,overrides", CASES[::2])
def test_the_accelerator_step_holds_plain_convolutions_and_none_of_the_cpu_forms(name, shape, overrides):
  stock = _lowered_step(name, shape, overrides, backend.STOCK)
  cpu = _lowered_step(name, shape, overrides, CPU_FORMS["cpu, in a loop"])
  n_convs = len(_ops(stock, "convolution"))
  # Forward and backward of every conv are convolutions (the first layer's input gradient is
  # not needed); the CPU forms turn strided and transposed ones into matmuls and slices.
  assert n_convs >= 2 * 6 if name == "conv" else n_convs >= 2 * 7
  assert len(_ops(cpu, "convolution")) < n_convs
  assert not _ops(stock, "dynamic_update_slice") and _ops(cpu, "dynamic_update_slice")
  assert len(_ops(stock, "dot_general")) < len(_ops(cpu, "dot_general"))


@pytest.mark.parametrize("name,shape,overrides", CASES[::2])
def test_half_precision_runs_every_conv_and_matmul_in_bf16(name, shape, overrides):
  text = _lowered_step(name, shape, overrides, backend.STOCK, half_precision=True)
  ops = _ops(text, "convolution") + _ops(text, "dot_general")
  assert len(ops) >= 12
  for line in ops:
    types = re.findall(r"tensor<[^>]*x(\w+)>", line.split(":")[-1])
    assert types and set(types) == {"bf16"}, line


def test_the_backend_picks_the_forms_once_per_model():
  rot, conv = configs.load("rotation"), configs.load("conv")
  assert backend.model_impl(rot, "gpu") == backend.model_impl(rot, "tpu") == backend.STOCK
  assert backend.model_impl(rot, "cpu") == CPU_FORMS["cpu, one step"]
  assert backend.model_impl(conv, "cpu") == CPU_FORMS["cpu, in a loop"]
  assert (backend.steps_per_call(rot, "cpu"), backend.steps_per_call(rot, "gpu")) == (1, 32)
  assert backend.steps_per_call(configs.load("rotation", steps_per_call=8), "cpu") == 8
  assert models.build(rot, (28, 28, 1)).impl == backend.model_impl(rot)  # this machine's
  params = {"w": jnp.arange(6.0).reshape(2, 3)}
  g = {"w": jnp.ones((2, 3))}
  for platform, ref in (("gpu", optax.scale_by_adam()), ("cpu", backend.cpu_scale_by_adam())):
    tx = backend.scale_by_adam(platform)
    np.testing.assert_array_equal(tx.update(g, tx.init(params))[0]["w"],
                                  ref.update(g, ref.init(params))[0]["w"])


def test_a_workdir_made_before_the_backend_choice_resumes_and_loads(tmp_path):
  """config.json of earlier versions held `arch.loop_safe_conv` and `steps_per_call=1`."""
  from ae_jax import checkpoint, train  # pylint: disable=g-import-not-at-top
  from tests.conftest import saved_state, tiny  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "old")
  small = {"arch.widths": (8, 8), "arch.latent_dim": 8, "min_steps": 0, "batch_size": 256}
  train.train_and_evaluate(tiny("rotation", **small, num_epochs=1), workdir)
  path = tmp_path / "old" / "config.json"
  old = json.loads(path.read_text())
  old["steps_per_call"], old["arch"]["loop_safe_conv"] = 1, False
  path.write_text(json.dumps(old))
  _, model, variables, step = checkpoint.load_for_inference(workdir)
  assert step == old["derived"]["total_steps"] and model.impl == backend.model_impl(
      configs.load("rotation", **small))
  state = train.train_and_evaluate(tiny("rotation", **small, num_epochs=2), workdir)
  assert int(state.step) == 2 * step == saved_state(workdir)[1]


def test_cpu_compiler_options_this_xla_lacks_are_dropped(monkeypatch):
  monkeypatch.setitem(steps._CPU_OPTIONS, "xla_cpu_no_such_option", True)  # pylint: disable=protected-access
  opts = steps._cpu_options(None)  # pylint: disable=protected-access
  assert "xla_cpu_no_such_option" not in opts
  assert set(opts) < set(steps._CPU_OPTIONS)  # pylint: disable=protected-access
  compiled = jax.jit(lambda x: x @ x).lower(jnp.ones((4, 4))).compile(opts)  # the rest compile
  np.testing.assert_array_equal(compiled(jnp.ones((4, 4))), np.full((4, 4), 4.0))


def test_only_a_step_on_xla_convolutions_keeps_them_off_ynnpack():
  key, value = next(iter(steps._XLA_CONV_OPTIONS.items()))  # pylint: disable=protected-access
  known = steps._known_option(key, value)  # pylint: disable=protected-access
  for name, steps_per_call, expected in (("rotation", 0, known), ("rotation", 8, False),
                                         ("conv", 0, False), ("mlp", 1, False)):
    config = configs.load(name, steps_per_call=steps_per_call)
    opts = steps._cpu_options(models.build(config, (28, 28, 1)))  # pylint: disable=protected-access
    assert (opts.get(key) == value) == expected, (name, steps_per_call)
