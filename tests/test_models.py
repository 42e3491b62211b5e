"""Every registered model: output shapes, exact parameter counts, encode/decode, rng use;
the conv layers against XLA's own convolutions and PyTorch's transposed-conv definition."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import configs
from ae_jax import inference, models
from ae_jax.models import layers

SHAPES = [(28, 28, 1), (32, 32, 3)]
RANGE = {"resnet": "-1,1"}
CONFIG_OF = {"resnet": "rotation"}  # the config file that builds each model


def _build(name, shape, **overrides):
  config = configs.load(CONFIG_OF.get(name, name), **overrides)
  model = models.build(config, shape)
  return model, jax.jit(lambda rng: models.init(model, rng, shape))(jax.random.PRNGKey(0))


def _images(shape, n=3, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(n, *shape)), jnp.float32)


def _dense(i, o, bias=True):
  return i * o + (o if bias else 0)


def _conv(k, i, o, bias=True):
  return k * k * i * o + (o if bias else 0)


def _mlp_count(sizes, batch_norm):
  """Dense chain over `sizes`; BatchNorm (scale, bias) after every layer but the last."""
  dense = sum(_dense(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
  return dense + (2 * sum(sizes[1:-1]) if batch_norm else 0)


def expected_params(name, shape):
  h, w, c = shape
  d = h * w * c
  if name == "mlp":  # 784-392-8-392-784
    return _mlp_count([d, 392, 8, 392, d], False)
  if name == "mlp_bn":  # report 003: BN after each layer incl. the latent, none on the output
    return _mlp_count([d, 500, 100, 20, 100, 500, d], True)
  if name == "vae":  # 784-512-(2·16) | 16-512-784
    return _dense(d, 512) + _dense(512, 32) + _dense(16, 512) + _dense(512, d)
  if name == "conv":  # report 001
    return (_conv(3, c, 16) + _conv(3, 16, 32) + _conv(5, 32, 64)
            + _conv(5, 64, 32) + _conv(3, 32, 16) + _conv(3, 16, c))
  if name == "resnet":  # widths (16, 32), one residual block per stage each way, latent 64,
    # rotation head on the flattened bottom feature maps
    block = lambda ch: 2 * _conv(3, ch, ch, bias=False) + 2 * 2 * ch  # + 2 GroupNorms
    bottom = (math.ceil(h / 4) * math.ceil(w / 4)) * 32
    return (_conv(2, c, 16) + block(16) + _conv(2, 16, 32) + block(32) + _dense(bottom, 64)
            + _dense(64, bottom) + block(32) + _conv(3, 32, 64) + block(16) + _conv(3, 16, 4 * c)
            + _dense(bottom, 4))
  raise KeyError(name)


def test_every_registered_model_has_a_config_and_a_count():
  assert set(models.names()) == {"mlp", "mlp_bn", "conv", "vae", "resnet"}
  assert models.model_class("rotation") is models.model_class("resnet")  # its old name


def _abstract(name, shape, **overrides):
  """(model, variables, outputs) as shapes only: traced, not compiled."""
  model = models.build(configs.load(CONFIG_OF.get(name, name), **overrides), shape)
  variables = jax.eval_shape(lambda rng: models.init(model, rng, shape), jax.random.PRNGKey(0))
  x = jax.ShapeDtypeStruct((3, *shape), jnp.float32)
  return model, variables, jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", models.names())
def test_output_shapes_and_parameter_counts(name, shape):
  model, variables, out = _abstract(name, shape, pixel_range=RANGE.get(name, "0,1"))
  assert models.count_params(variables["params"]) == expected_params(name, shape)
  assert out["recon"].shape == (3, *shape)
  assert len(out["z"].shape) == 2 and out["z"].shape[0] == 3
  if name == "resnet":
    assert out["logits"].shape == (3, 4)
  if name == "vae":
    assert out["mean"].shape == out["logvar"].shape == out["z"].shape
  z = jax.eval_shape(lambda v, x: model.apply(v, x, method="encode"), variables,
                     jax.ShapeDtypeStruct((3, *shape), jnp.float32))
  assert z.shape == out["z"].shape
  recon = jax.eval_shape(lambda v, z: model.apply(v, z, method="decode"), variables, z)
  assert recon.shape == (3, *shape)


SMALL = {"resnet": {"arch.widths": (8, 8), "arch.latent_dim": 8}}


@pytest.mark.parametrize("name", models.names())
def test_encode_decode_equal_the_forward_pass(name):
  shape = (28, 28, 1)
  model, variables = _build(name, shape, pixel_range=RANGE.get(name, "0,1"), **SMALL.get(name, {}))
  x = _images(shape)

  @jax.jit
  def run(variables, x):
    z = model.apply(variables, x, method="encode")
    return model.apply(variables, x, train=False), z, model.apply(variables, z, method="decode")

  out, z, recon = run(variables, x)
  lo = -1.0 if name in RANGE else 0.0
  assert float(out["recon"].min()) >= lo and float(out["recon"].max()) <= 1.0
  np.testing.assert_allclose(z, out["z"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(recon, out["recon"], rtol=1e-5, atol=1e-6)


def test_documented_parameter_counts():
  assert expected_params("mlp", (28, 28, 1)) == 622_504
  assert expected_params("mlp_bn", (28, 28, 1)) == 892_444
  assert expected_params("vae", (28, 28, 1)) == 829_232
  assert expected_params("conv", (28, 28, 1)) == 112_065
  assert expected_params("conv", (32, 32, 3)) == 112_643
  assert expected_params("resnet", (28, 28, 1)) == 276_312
  assert expected_params("resnet", (32, 32, 3)) == 341_440


def _apply_train(model, variables, x, seed):
  rngs = {"dropout": jax.random.PRNGKey(seed), "latent": jax.random.PRNGKey(seed)}
  mutable = ["batch_stats"] if "batch_stats" in variables else False
  out = model.apply(variables, x, train=True, rngs=rngs, mutable=mutable)
  return out[0] if mutable else out


@pytest.mark.parametrize("name", ["mlp_bn", "vae"])
def test_train_mode_uses_its_rng_and_eval_mode_is_deterministic(name):
  model, variables = _build(name, (28, 28, 1))
  x = _images((28, 28, 1), n=8)
  a, b = (_apply_train(model, variables, x, s)["recon"] for s in (1, 2))
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(_apply_train(model, variables, x, 1)["recon"], a)
  e1, e2 = (model.apply(variables, x, train=False)["recon"] for _ in range(2))
  np.testing.assert_array_equal(e1, e2)
  assert not np.allclose(e1, a)


def test_mlp_bn_latent_is_relu_without_dropout():
  model, variables = _build("mlp_bn", (28, 28, 1))
  x = _images((28, 28, 1), n=64)
  z = [_apply_train(model, variables, x, s)["z"] for s in (1, 2)]
  assert float(jnp.min(z[0])) >= 0.0
  # Dropout would zero about half of the latent units; BatchNorm + ReLU leaves about half > 0.
  assert 0.3 < float(jnp.mean(z[0] > 0)) < 0.7


def test_vae_sample_and_reparameterisation():
  model, variables = _build("vae", (28, 28, 1))
  x = _images((28, 28, 1), n=64)
  eps = [(o["z"] - o["mean"]) / jnp.exp(0.5 * o["logvar"])
         for o in (_apply_train(model, variables, x, s) for s in (1, 2))]
  assert not np.allclose(eps[0], eps[1])
  assert abs(float(jnp.mean(eps[0]))) < 0.1 and 0.9 < float(jnp.std(eps[0])) < 1.1
  np.testing.assert_array_equal(model.apply(variables, x)["z"], model.apply(variables, x)["mean"])
  s = model.apply(variables, jax.random.PRNGKey(0), 5, method="sample")
  assert s.shape == (5, 28, 28, 1) and float(s.min()) >= 0.0 and float(s.max()) <= 1.0


def test_rotation_head_on_the_latent():
  _, variables, out = _abstract("rotation", (28, 28, 1), **{"arch.rotation_head": "latent"})
  assert out["logits"].shape == (3, 4)
  extra = _dense(64, 4) - _dense(7 * 7 * 32, 4)
  assert models.count_params(variables["params"]) == expected_params("resnet", (28, 28, 1)) + extra


@pytest.mark.parametrize("embedding", ["features", "latent", "both"])
def test_rotation_embed_is_the_feature_maps_the_latent_or_both(embedding):
  """`embed` (what clustering reads): the flattened bottom maps that feed both z and the
  rotation head, z itself, or the two side by side; the main job's config picks z."""
  assert configs.load("rotation").arch.embedding == "latent"
  shape = (28, 30, 1)  # padded to 28×32: 7×8 bottom maps of 32 channels
  model, variables = _build("rotation", shape, **{"arch.embedding": embedding})
  x = _images(shape) * 2 - 1
  e = model.apply(variables, x, method="embed")
  h, z = model.apply(variables, x, method=lambda m, x: m._encode(x, False))
  want = {"features": h, "latent": z, "both": np.concatenate([h, z], axis=1)}[embedding]
  assert e.shape == want.shape == (3, {"features": 1792, "latent": 64, "both": 1856}[embedding])
  np.testing.assert_array_equal(e, want)
  np.testing.assert_allclose(z, h @ variables["params"]["encoder"]["latent"]["kernel"]
                             + variables["params"]["encoder"]["latent"]["bias"], rtol=1e-4, atol=1e-5)


def test_models_without_embed_embed_their_latent():
  model, variables = _build("mlp", (28, 28, 1))
  x = np.asarray(_images((28, 28, 1)))
  np.testing.assert_array_equal(inference.embed(model, variables, x),
                                inference.encode(model, variables, x))


def test_rotation_batch_norm_variant_updates_running_stats():
  model, variables = _build("rotation", (28, 28, 1), **SMALL["resnet"], **{"arch.norm": "batch"})
  x = _images((28, 28, 1), n=4)
  _, new = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  before, after = (jax.tree_util.tree_leaves(v["batch_stats"]) for v in (variables, new))
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_rotation_pads_odd_sizes_back():
  shape = (27, 30, 1)
  model, variables = _build("rotation", shape, **SMALL["resnet"])
  out = model.apply(variables, _images(shape) * 2 - 1)
  assert out["recon"].shape == (3, *shape) and float(jnp.abs(out["recon"]).max()) <= 1


# conv2d: (input shape, kernel shape, strides, padding, lhs dilation)
CONVS = [((2, 14, 14, 16), (3, 3, 16, 8), (1, 1), ((1, 1), (1, 1)), (1, 1)),
         ((2, 15, 13, 3), (3, 3, 3, 16), (2, 2), ((1, 1), (1, 1)), (1, 1)),
         ((2, 28, 28, 1), (2, 2, 1, 16), (2, 2), ((0, 0), (0, 0)), (1, 1)),
         ((2, 8, 8, 32), (3, 3, 32, 16), (1, 1), ((1, 2), (1, 2)), (2, 2)),
         ((2, 9, 7, 4), (3, 2, 4, 5), (2, 1), ((2, 0), (1, 3)), (3, 2))]


@pytest.mark.parametrize("xs,ws,strides,padding,dilation", CONVS)
def test_conv2d_vjp_matches_xla(xs, ws, strides, padding, dilation):
  rng = np.random.default_rng(0)
  x, w = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in (xs, ws))
  ref = lambda x, w: lax.conv_general_dilated(x, w, strides, padding, lhs_dilation=dilation,
                                              dimension_numbers=layers.DIMENSIONS)
  mine = lambda x, w: layers.conv2d(x, w, strides, padding, dilation)
  y = ref(x, w)
  np.testing.assert_allclose(mine(x, w), y, rtol=1e-5, atol=1e-5)
  ct = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  for a, b in zip(jax.vjp(ref, x, w)[1](ct), jax.vjp(mine, x, w)[1](ct)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("n,k,s,p,op", [(4, 5, 1, 0, 0), (8, 3, 2, 1, 1), (15, 3, 2, 2, 1),
                                        (7, 3, 2, 1, 0)])
def test_conv_transpose_is_pytorchs(n, k, s, p, op):
  """PyTorch's ConvTranspose2d(k, s, p, op) is the input gradient of Conv2d(k, s, p) on an
  input of size (n − 1)·s + k − 2p + op; ours equals it with the kernel flipped and its
  in/out channels swapped (a reparameterisation: the same parameter count)."""
  m = (n - 1) * s + k - 2 * p + op
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=(k, k, 3, 4)), jnp.float32)  # conv 3 → 4 channels
  u = jnp.asarray(rng.normal(size=(2, n, n, 4)), jnp.float32)
  conv = lambda x: lax.conv_general_dilated(x, w, (s, s), ((p, p), (p, p)),
                                            dimension_numbers=layers.DIMENSIONS)
  _, vjp = jax.vjp(conv, jnp.zeros((2, m, m, 3)))
  assert conv(jnp.zeros((2, m, m, 3))).shape[1] == n
  layer = layers.conv_transpose(3, k, stride=s, padding=p, output_padding=op)
  params = {"params": {"kernel": jnp.flip(w, (0, 1)).swapaxes(2, 3), "bias": jnp.zeros(3)}}
  y = layer.apply(params, u)
  assert y.shape == (2, m, m, 3)
  np.testing.assert_allclose(y, vjp(u)[0], rtol=1e-4, atol=1e-4)


def test_conv_autoencoder_sizes_follow_report_001():
  # 26×26 is the report's own size (no padding); 28 and 32 are padded to 30 and 34.
  for shape, (lh, lw) in [((26, 26, 3), (3, 3)), ((28, 28, 1), (4, 4)), ((32, 32, 3), (5, 5)),
                          ((27, 31, 1), (4, 5))]:
    _, _, out = _abstract("conv", shape)
    assert out["z"].shape == (3, lh * lw * 64) and out["recon"].shape == (3, *shape)


def test_depth_to_space_is_pixel_shuffle():
  r, c = 2, 3
  x = jnp.arange(2 * 4 * 5 * r * r * c, dtype=jnp.float32).reshape(2, 4, 5, r * r * c)
  y = layers.depth_to_space(x, r)
  assert y.shape == (2, 8, 10, c)
  b, h, w, ch, i, j = 1, 3, 2, 2, 1, 0  # PyTorch: out[c, h·r+i, w·r+j] = in[c·r²+i·r+j, h, w]
  assert y[b, h * r + i, w * r + j, ch] == x[b, h, w, ch * r * r + i * r + j]
  np.testing.assert_array_equal(layers.space_to_depth(y, r), x)


def test_group_norm_matches_flax():
  x = jnp.asarray(np.random.default_rng(0).normal(2.0, 3.0, size=(4, 7, 7, 32)), jnp.float32)
  ref = nn.GroupNorm(num_groups=8)
  variables = ref.init(jax.random.PRNGKey(0), x)
  variables = jax.tree_util.tree_map(lambda a: a + 0.1 * jnp.arange(a.size).reshape(a.shape),
                                     variables)
  np.testing.assert_allclose(layers.GroupNorm(8).apply(variables, x), ref.apply(variables, x),
                             rtol=1e-4, atol=1e-4)


def test_pad_and_crop_round_trip():
  x = _images((27, 30, 2))
  y = layers.pad_to(x, (32, 32), -1.0)
  assert y.shape == (3, 32, 32, 2) and float(y[0, 0, 0, 0]) == -1.0
  np.testing.assert_array_equal(layers.crop_to(y, (27, 30)), x)
