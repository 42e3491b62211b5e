"""Model registry: `config.model` names a Linen autoencoder, `config.arch` holds its fields.

Every autoencoder follows one protocol (see `mlp.MLPAutoencoder`):

    out = model.apply(variables, x_BHWC, train=False)   # dict: 'recon' (B,H,W,C), maybe 'logits', 'mean', 'logvar'
    z_BD = model.apply(variables, x_BHWC, method='encode')
    e_BE = model.apply(variables, x_BHWC, method='embed')   # optional: what to cluster (else encode)
    x_BHWC = model.apply(variables, z_BD, method='decode')

Example:

    from ae_jax import models
    from configs import mlp
    model = models.build(mlp.get_config(), image_shape=(28, 28, 1))
"""
import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np

from ae_jax import errors, pixels

_REGISTRY = {
    "mlp": "ae_jax.models.mlp:MLPAutoencoder",
    "mlp_bn": "ae_jax.models.mlp:MLPAutoencoder",
    "conv": "ae_jax.models.conv:ConvAutoencoder",
    "vae": "ae_jax.models.vae:VAE",
    "resnet": "ae_jax.models.resnet:ResNetAutoencoder",
}
# Names models had before; a workdir's config.json may still hold them.
ALIASES = {"rotation": "resnet"}
# arch keys of earlier versions, now chosen by backend (ae_jax/backend.py); ignored.
RETIRED_ARCH_KEYS = ("loop_safe_conv",)
_NOT_ARCH = {"parent", "name", "image_shape", "pixel_range", "impl"}

def names():
  """The registered model names."""
  return sorted(_REGISTRY)


def model_class(name: str):
  """The Linen class registered as `name` (or an old name in ALIASES); UserError otherwise."""
  name = ALIASES.get(name, name)
  if name not in _REGISTRY:
    raise errors.UserError(f"unknown model {name!r}; known: {', '.join(names())}")
  module, cls = _REGISTRY[name].split(":")
  return getattr(importlib.import_module(module), cls)


def check_arch(config):
  """`config.model` is registered and every `config.arch` key is a field of it."""
  cls = model_class(config.model)
  fields = {f.name for f in dataclasses.fields(cls)} - _NOT_ARCH
  unknown = sorted(set(config.arch.keys()) - fields - set(RETIRED_ARCH_KEYS))
  if unknown:
    raise errors.UserError(f"config.arch.{unknown[0]} is not a field of model {config.model!r}; "
                           f"its fields are {', '.join(sorted(fields))}")
  return cls


def build(config, image_shape):
  """Returns the Linen module for `config.model` over images of `image_shape` (H, W, C), its
  layers implemented for JAX's backend (ae_jax/backend.py)."""
  from ae_jax import backend  # pylint: disable=g-import-not-at-top  (backend imports models.layers)
  cls = check_arch(config)
  arch = {k: tuple(v) if isinstance(v, list) else v for k, v in config.arch.to_dict().items()
          if k not in RETIRED_ARCH_KEYS}
  if "impl" in {f.name for f in dataclasses.fields(cls)}:
    arch["impl"] = backend.model_impl(config)
  return cls(image_shape=tuple(int(s) for s in image_shape),
             pixel_range=pixels.parse(config.pixel_range), **arch)


def init(model, rng, image_shape):
  """Pure init on one dummy example; returns the variables dict (params, maybe batch_stats)."""
  x = jnp.zeros((1, *image_shape), jnp.float32)
  return model.init({"params": rng, "dropout": rng, "latent": rng}, x, train=False)


def count_params(params) -> int:
  """Number of scalars in a params tree."""
  return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def size_mb(params) -> float:
  """Size of a params tree in MiB."""
  return sum(p.size * p.dtype.itemsize for p in jax.tree_util.tree_leaves(params)) / 2**20


def output_activation(name: str):
  """The decoder's output nonlinearity named by `PixelRange.activation`."""
  return {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}[name]
