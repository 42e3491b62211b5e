"""Fully connected autoencoders: report 004's 784-392-8-392-784 and report 003's BN/Dropout MLP.

    model = MLPAutoencoder(image_shape=(28, 28, 1), pixel_range=pixels.UNIT,
                           hidden=(392,), latent_dim=8)
    variables = model.init(rng, x_BHWC, train=False)   # 622,504 parameters
"""
import math
from typing import Sequence

import flax.linen as nn

from ae_jax import pixels
from ae_jax.models import output_activation as _activation


class MLPStack(nn.Module):
  """Dense layers, each followed by [BatchNorm] → ReLU → [Dropout]; the last one gets
  [BatchNorm] → ReLU only if `final_act` and never Dropout (report 003's latent)."""

  features: Sequence[int]
  batch_norm: bool = False
  dropout: float = 0.0
  final_act: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool):
    for i, f in enumerate(self.features):
      x = nn.Dense(f)(x)
      if i == len(self.features) - 1 and not self.final_act:
        break
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
      if self.dropout and i < len(self.features) - 1:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return x


class MLPAutoencoder(nn.Module):
  """Flatten → encoder MLP → latent (ReLU'd, as in report 004) → mirrored decoder → image."""

  image_shape: Sequence[int]
  pixel_range: pixels.PixelRange = pixels.UNIT  # inputs arrive and recons leave in it
  hidden: Sequence[int] = (392,)
  latent_dim: int = 8
  batch_norm: bool = False
  dropout: float = 0.0
  latent_relu: bool = True

  def setup(self):
    self.encoder = MLPStack((*self.hidden, self.latent_dim), self.batch_norm, self.dropout,
                            final_act=self.latent_relu)
    self.decoder = MLPStack((*reversed(self.hidden), math.prod(self.image_shape)),
                            self.batch_norm, self.dropout, final_act=False)

  def encode(self, x_BHWC, *, train: bool = False):
    """Images in `pixel_range` → latents (B, D)."""
    return self.encoder(x_BHWC.reshape(x_BHWC.shape[0], -1), train=train)

  def decode(self, z_BD, *, train: bool = False):
    """Latents (B, D) → images in `pixel_range`."""
    y = self.decoder(z_BD, train=train)
    return _activation(self.pixel_range.activation)(y).reshape(z_BD.shape[0], *self.image_shape)

  def __call__(self, x_BHWC, *, train: bool = False):
    z = self.encode(x_BHWC, train=train)
    return {"recon": self.decode(z, train=train), "z": z}
