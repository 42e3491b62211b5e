"""Gaussian-latent variational autoencoder with MLP encoder and decoder (fast on CPU).

Encoder: flatten → Dense+ReLU per `hidden` → Dense(2·latent_dim) split into mean and log σ².
Training draws z = mean + exp(logvar / 2)·ε with ε from the 'latent' rng (reparameterisation);
evaluation uses z = mean. Decoder: Dense+ReLU per reversed `hidden` → Dense(H·W·C) → output
activation. The loss adds kl_weight · KL(q(z|x) ‖ N(0, I)) from out['mean'] and out['logvar'].

Parameters for 28×28×1, hidden (512,), latent 16: 829,232.

    model = VAE(image_shape=(28, 28, 1), pixel_range=pixels.UNIT, hidden=(512,), latent_dim=16)
    variables = model.init({'params': rng, 'latent': rng}, x_BHWC, train=False)
    out = model.apply(variables, x_BHWC, train=True, rngs={'latent': rng})  # recon, z, mean, logvar
    x_NHWC = model.apply(variables, rng, 8, method=VAE.sample)              # 8 prior samples
"""
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ae_jax import pixels
from ae_jax.models import output_activation as _activation
from ae_jax.models.mlp import MLPStack


class VAE(nn.Module):
  """MLP VAE with a diagonal Gaussian posterior and a standard normal prior."""

  image_shape: Sequence[int]
  pixel_range: pixels.PixelRange = pixels.UNIT  # inputs arrive and recons leave in it
  hidden: Sequence[int] = (512,)
  latent_dim: int = 16

  def setup(self):
    self.encoder = MLPStack((*self.hidden, 2 * self.latent_dim), final_act=False)
    self.decoder = MLPStack((*reversed(self.hidden), math.prod(self.image_shape)), final_act=False)

  def posterior(self, x_BHWC):
    """Returns (mean, logvar) of q(z|x), each B×latent_dim."""
    h = self.encoder(x_BHWC.reshape(x_BHWC.shape[0], -1), train=False)
    return jnp.split(h, 2, axis=-1)

  def encode(self, x_BHWC, *, train: bool = False):
    """Images in `pixel_range` → posterior means (B, D)."""
    del train
    return self.posterior(x_BHWC)[0]

  def decode(self, z_BD, *, train: bool = False):
    """Latents (B, D) → images in `pixel_range`."""
    y = self.decoder(z_BD, train=train)
    return _activation(self.pixel_range.activation)(y).reshape(z_BD.shape[0], *self.image_shape)

  def sample(self, rng, n: int):
    """Decodes `n` draws from the prior N(0, I)."""
    return self.decode(jax.random.normal(rng, (n, self.latent_dim)))

  def __call__(self, x_BHWC, *, train: bool = False):
    mean, logvar = self.posterior(x_BHWC)
    z = mean
    if train:
      eps = jax.random.normal(self.make_rng("latent"), mean.shape, mean.dtype)
      z = mean + jnp.exp(0.5 * logvar) * eps
    return {"recon": self.decode(z, train=train), "z": z, "mean": mean, "logvar": logvar}
