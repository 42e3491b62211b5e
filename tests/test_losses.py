"""The rotation task's objective terms: which images are reconstructed and which the head sees."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ae_jax import data, losses, models, pixels
from tests.conftest import tiny

SMALL = {"arch.widths": (8, 8), "arch.latent_dim": 8, "rotation_weight": 1.0,
         "pose_augment.max_degrees": 0.0, "pose_augment.max_shift": 0.0}  # inputs = images


@pytest.fixture(scope="module")
def setup():
  x01 = data.as_unit(data.load("mnist_5k").images[:8])
  model = models.build(tiny("rotation", **SMALL), x01.shape[1:])
  variables = models.init(model, jax.random.PRNGKey(1), x01.shape[1:])
  return x01, model, variables


def _expected(model, variables, recon_in, target, head_in, k_B):
  out = model.apply(variables, recon_in)
  logits = model.apply(variables, head_in, method="rotation_logits")
  mse = jnp.mean((out["recon"] - target) ** 2, axis=(1, 2, 3))
  return mse, optax.softmax_cross_entropy_with_integer_labels(logits, k_B)


@pytest.mark.parametrize("recon", ["rotated", "upright"])
def test_train_terms_reconstruct_the_named_images_and_score_the_turned_ones(setup, recon):
  x01, model, variables = setup
  config = tiny("rotation", **SMALL, rotation_recon=recon)
  rng = jax.random.PRNGKey(7)
  terms, _ = losses.per_example(model, variables, x01, rng, config, train=True)
  k_B = jax.random.randint(jax.random.split(rng, 3)[1], (len(x01),), 0, 4)
  assert len(set(np.asarray(k_B).tolist())) > 1  # the batch holds several rotations
  x = model.pixel_range.to_model(x01)
  turned = losses.rotate_batch(x, k_B)
  recon_in = turned if recon == "rotated" else x
  mse, ce = _expected(model, variables, recon_in, recon_in, turned, k_B)
  assert set(terms) == {"mse", "ce", "rot_acc"} and terms["mse"].shape == (len(x01),)
  np.testing.assert_allclose(terms["mse"], mse, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(terms["ce"], ce, rtol=1e-5, atol=1e-6)
  loss = losses.total({k: v.mean() for k, v in terms.items()}, config)
  np.testing.assert_allclose(loss, mse.mean() + config.rotation_weight * ce.mean(), rtol=1e-5)


def test_eval_terms_are_the_same_for_both_modes(setup):
  x01, model, variables = setup
  rng = jax.random.PRNGKey(0)
  terms = [losses.per_example(model, variables, x01, rng, tiny("rotation", **SMALL, rotation_recon=r),
                              train=False)[0] for r in ("rotated", "upright")]
  x = pixels.SIGNED.to_model(x01)
  k_B = jnp.arange(len(x01)) % 4
  mse, ce = _expected(model, variables, x, x, losses.rotate_batch(x, k_B), k_B)
  for t in terms:
    np.testing.assert_allclose(t["mse"], mse, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(t["ce"], ce, rtol=1e-5, atol=1e-6)


def test_rotation_logits_are_the_forward_pass_logits(setup):
  x01, model, variables = setup
  np.testing.assert_array_equal(model.apply(variables, x01, method="rotation_logits"),
                                model.apply(variables, x01)["logits"])


def test_rotate_batch_turns_each_image_by_its_own_multiple_of_90_degrees():
  x = jnp.arange(2 * 3 * 3, dtype=jnp.float32).reshape(2, 3, 3, 1)
  out = losses.rotate_batch(x, jnp.array([1, 2]))
  np.testing.assert_array_equal(out[0], jnp.rot90(x[0], 1))
  np.testing.assert_array_equal(out[1], jnp.rot90(x[1], 2))
