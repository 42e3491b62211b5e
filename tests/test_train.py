"""Training core: parameter count, loss going down, one compile, bit-exact resume, plateau."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ae_jax import backend, data, errors, models, pixels, run_config, steps, train, train_state
import configs
from tests.conftest import tiny


def test_mlp_param_count_is_report_004s():
  config = configs.load("mlp")
  model = models.build(config, (28, 28, 1))
  params = models.init(model, jax.random.PRNGKey(0), (28, 28, 1))["params"]
  assert models.count_params(params) == 622_504
  assert round(models.size_mb(params), 2) == 2.37


def _chunk_setup(config, n=512):
  ds = data.load("mnist_5k").take(np.arange(n))
  model = models.build(config, ds.image_shape)
  spe = n // config.batch_size
  tx = train_state.optimizer(config, spe)
  mesh = steps.make_mesh(config.batch_size)
  new_state = lambda: steps.replicate(train_state.create(config, model, tx, ds.image_shape), mesh)
  traces = []
  chunk = steps.make_train_call(model, tx, config, n_train=n, mesh=mesh, on_trace=traces.append)

  def runner():
    """run(state, k) → (state, first bad step): k steps of one run; `run.fork()` starts
    another run (its own epoch order) through the same jitted chunk."""
    perm = [steps.epoch_order(config, n, 0, mesh)]

    def run(state, k, fresh_order=False):  # threads the epoch order through calls, as train.py
      if fresh_order:
        perm[0] = steps.epoch_order(config, n, int(state.step), mesh)
      state, perm[0], bad = chunk(state, perm[0], ds.images, k, False)
      return state, bad
    run.jaxpr = lambda state: chunk.trace(state, perm[0], ds.images, 1, False).jaxpr.jaxpr
    run.fork, run.new_state = runner, new_state
    return run
  return ds, model, new_state(), runner(), traces


def test_images_stay_uint8_on_device_and_train_as_their_floats_do():
  """4× less device memory: the step gathers uint8 pixels and divides by 255 itself."""
  config = tiny(batch_size=32)
  ds = data.load("mnist_5k").take(np.arange(256))
  assert ds.images.dtype == np.uint8
  model = models.build(config, ds.image_shape)
  tx = train_state.optimizer(config, 8)
  mesh = steps.make_mesh(32)
  call = steps.make_train_call(model, tx, config, n_train=256, mesh=mesh)
  ends = []
  for images in (ds.images, data.as_unit(ds.images)):  # as stored, and as float32 in [0, 1]
    state, images = steps.replicate((train_state.create(config, model, tx, ds.image_shape), images), mesh)
    perm = steps.epoch_order(config, 256, 0, mesh)
    ends.append(call(state, perm, images, 16, False)[0])
  assert images.dtype == np.float32 and ds.images.nbytes * 4 == images.nbytes
  # XLA rounds the in-step division its own way (last bit); 16 Adam steps of lr 1e-3 carry
  # that to below 1e-6 in the weights.
  for a, b in zip(jax.tree_util.tree_leaves(ends[0].params), jax.tree_util.tree_leaves(ends[1].params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=2e-6)


def test_loss_decreases_over_200_steps_and_compiles_once():
  config = tiny(batch_size=32)
  ds, model, state, chunk, traces = _chunk_setup(config, n=512)
  evaluate = steps.make_eval(model, config, steps.make_mesh(32))
  before = float(evaluate(train_state.variables(state), ds.images)["eval_loss"])
  for k in (8, 8, 5, 3, 16) * 5:  # chunk lengths vary; 200 steps in all
    state, bad = chunk(state, k)
  assert int(state.step) == 200 and int(bad) == -1
  after = float(evaluate(train_state.variables(state), ds.images)["eval_loss"])
  assert after < 0.6 * before, (before, after)
  assert len(traces) == 1  # the step is traced once whatever the chunk length


def test_chunking_does_not_change_the_result():
  config = tiny(batch_size=32)
  _, _, s1, chunk1, traces = _chunk_setup(config, n=256)
  (s2, chunk2), (s3, chunk3) = ((chunk1.new_state(), chunk1.fork()) for _ in range(2))
  s1, _ = chunk1(s1, 12)  # 8 steps per epoch: crosses into epoch 1, redraws the order inside
  for k in (5, 7):
    s2, _ = chunk2(s2, k)
  s3, _ = chunk3(s3, 8)
  s3, _ = chunk3(s3, 4, fresh_order=True)  # epoch 1's order drawn outside the loop
  assert int(s1.step) == int(s2.step) == int(s3.step) == 12 and len(traces) == 1  # one program
  for other in (s2, s3):
    for a, b in zip(jax.tree_util.tree_leaves(s1.params), jax.tree_util.tree_leaves(other.params)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _step_loops(jaxpr):
  """How many while loops (inside jitted calls too) run a matmul: the training-step loop."""
  n = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "while":
      n += "dot_general" in str(eqn.params["body_jaxpr"])
    elif "jaxpr" in eqn.params:
      n += _step_loops(eqn.params["jaxpr"].jaxpr)
  return n


def test_one_step_calls_have_no_loop_and_follow_the_looped_run():
  (_, _, looped, chunk_l, _), (_, _, single, chunk_1, traces) = (
      _chunk_setup(tiny(batch_size=32, steps_per_call=s), n=256) for s in (8, 1))
  assert _step_loops(chunk_l.jaxpr(looped)) == 1 and _step_loops(chunk_1.jaxpr(single)) == 0
  looped, _ = chunk_l(looped, 10)  # 8 steps per epoch: both cross into epoch 1
  for _ in range(10):
    single, bad = chunk_1(single, 1)
  assert int(single.step) == 10 and int(bad) == -1 and len(traces) == 1
  for a, b in zip(jax.tree_util.tree_leaves(looped.params), jax.tree_util.tree_leaves(single.params)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_how_gradients_are_computed_or_read_out_is_not_part_of_a_runs_identity():
  old = tiny("rotation").to_dict()
  before_backend = {**old, "steps_per_call": 1, "arch": {**old["arch"], "loop_safe_conv": False}}
  assert run_config.differences(before_backend, old) == []  # workdirs made before ae_jax/backend.py
  assert run_config.differences(old, tiny("rotation", **{"arch.latent_dim": 4}).to_dict()) == [
      "arch.latent_dim (64 in the workdir, 4 now)"]
  before_rename = {**old, "model": "rotation"}  # workdirs made before the model was "resnet"
  assert run_config.differences(before_rename, tiny("rotation").to_dict()) == []
  arch = {k: v for k, v in old["arch"].items() if k != "embedding"}
  before_embedding = {**old, "arch": arch}  # made before arch.embedding: it reads out, not trains
  assert run_config.differences(before_embedding, old) == []


def test_adam_matches_optax_and_keeps_its_state_type():
  params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}
  ours, ref = backend.cpu_scale_by_adam(), optax.scale_by_adam()
  s_ours, s_ref = ours.init(params), ref.init(params)
  assert jax.tree_util.tree_structure(s_ours) == jax.tree_util.tree_structure(s_ref)
  for i in range(20):
    g = jax.tree_util.tree_map(lambda p: jax.random.normal(jax.random.PRNGKey(i), p.shape), params)
    u_ours, s_ours = ours.update(g, s_ours)
    u_ref, s_ref = ref.update(g, s_ref)
    for a, b in zip(jax.tree_util.tree_leaves((u_ours, s_ours)), jax.tree_util.tree_leaves((u_ref, s_ref))):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=1e-7)


def test_plateau_scheduler_cuts_the_learning_rate():
  config = tiny(learning_rate=1e-3)
  config.plateau.patience = 1
  tx = train_state.optimizer(config, steps_per_epoch=2)
  params = {"w": np.ones(3, np.float32)}
  opt = tx.init(params)
  for _ in range(8):  # a flat loss: no improvement
    _, opt = tx.update({"w": np.zeros(3, np.float32)}, opt, params, value=1.0)
  assert train_state.learning_rate(config, opt) < 1e-3


def _params(state):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves((state.params, state.opt_state))]


@pytest.mark.parametrize("name", ["mlp"])
def test_resume_is_bit_exact_and_starts_at_the_saved_step(tmp_path, name, capsys):
  straight = train.train_and_evaluate(tiny(name, num_epochs=2), str(tmp_path / "a"))
  first = train.train_and_evaluate(tiny(name, num_epochs=1), str(tmp_path / "b"))
  spe = json.load(open(tmp_path / "b" / "config.json"))["derived"]["steps_per_epoch"]
  assert int(first.step) == spe
  capsys.readouterr()
  resumed = train.train_and_evaluate(tiny(name, num_epochs=2), str(tmp_path / "b"))
  assert f"resuming from checkpoint at step {spe}" in capsys.readouterr().out
  assert int(resumed.step) == 2 * spe
  for a, b in zip(_params(straight), _params(resumed)):
    np.testing.assert_array_equal(a, b)
  # Identical metrics, line for line.
  assert open(tmp_path / "a" / "metrics.jsonl").read() == open(tmp_path / "b" / "metrics.jsonl").read()


@pytest.mark.parametrize("older_version", [False, True])
def test_finished_run_is_not_retrained(tmp_path, capsys, older_version):
  config = tiny()
  train.train_and_evaluate(config, str(tmp_path))
  mtime = os.path.getmtime(tmp_path / "metrics.jsonl")
  if older_version:  # a run made before pose_augment existed is the same run
    path = tmp_path / "config.json"
    saved = json.load(open(path))
    del saved["pose_augment"]
    json.dump(saved, open(path, "w"))
  capsys.readouterr()
  train.train_and_evaluate(config, str(tmp_path))
  assert "already finished" in capsys.readouterr().out
  assert os.path.getmtime(tmp_path / "metrics.jsonl") == mtime
  config.pose_augment.max_shift = 1.0  # but a changed value is a different run
  with pytest.raises(errors.UserError, match="pose_augment.max_shift"):
    train.train_and_evaluate(config, str(tmp_path))


def test_init_from_copies_params(tmp_path):
  src = train.train_and_evaluate(tiny(), str(tmp_path / "src"))
  state = train.train_and_evaluate(tiny(num_epochs=0, init_from=str(tmp_path / "src")),
                                   str(tmp_path / "dst"))
  for a, b in zip(jax.tree_util.tree_leaves(src.params), jax.tree_util.tree_leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class _Identity:
  """A stand-in model whose reconstruction is its input: the MSE then measures how far the
  inputs the model saw are from the targets it is scored against."""

  def __init__(self, pixel_range):
    self.pixel_range = pixels.parse(pixel_range)

  def apply(self, variables, x, train, rngs, mutable):
    return {"recon": x}


@pytest.mark.parametrize("pixel_range", ["0,1", "-1,1"])
def test_augmentation_moves_inputs_in_training_only_and_scores_the_clean_image(pixel_range):
  from ae_jax import losses  # pylint: disable=g-import-not-at-top
  x = data.as_unit(data.load("mnist_5k").images[:16])
  rng = jax.random.PRNGKey(0)
  config = tiny(pixel_range=pixel_range)
  mse = lambda c, train: losses.per_example(_Identity(c.pixel_range), {}, x, rng, c, train=train)[0]["mse"]
  assert float(mse(config, True).max()) == 0.0  # off by default
  config.pose_augment.max_degrees, config.pose_augment.max_shift = 8.0, 1.5
  moved = mse(config, True)
  assert moved.shape == (16,) and float(moved.min()) > 1e-3  # every image moved, target clean
  assert float(mse(config, False).max()) == 0.0  # evaluation sees the clean images
  assert np.array_equal(moved, mse(config, True))  # same rng, same augmentation
  config.noise_std = 0.1  # denoising on top: noise adds to the moved inputs (≈ σ² more MSE)
  np.testing.assert_allclose(float(np.mean(mse(config, True) - moved)), 0.01, atol=0.003)
