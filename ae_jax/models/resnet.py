"""Residual autoencoder with a rotation classifier on the latent (report 002's improved model).

Encoder: stem conv 3×3 (C → widths[0]) → per stage i: downsample conv 2×2 stride 2
(→ widths[i]) and `blocks` residual blocks → flatten → Dense(latent_dim) = z.
Rotation head: Dense(4) on z → out['logits'] (which of 0/90/180/270° the input was turned by;
the rotations themselves are applied by the training step).
Decoder (mirror): Dense → reshape → per stage from the deepest: `blocks` residual blocks and a
pixel-shuffle upsample (conv 3×3 to 4× the next width, then depth-to-space) → conv 3×3 to C →
output activation (tanh for data in [-1, 1]).

Residual block: conv3×3 → norm → act → conv3×3 → norm, plus the input, act after the add.
Norm is GroupNorm (default), BatchNorm (`use_running_average=not train`) or none.

Sizes: H and W are padded symmetrically with the background value (−1 for tanh, 0 for
sigmoid) to multiples of 2**len(widths) and the reconstruction is cropped back; with the
default two stages 28×28 and 32×32 need no padding.

Parameters with the defaults (widths (16, 32), 1 block per stage, latent 64, GroupNorm):
236,645 for 28×28×1 and 279,461 for 32×32×3.

    model = ResNetAutoencoder(image_shape=(28, 28, 1), output_activation='tanh')
    variables = model.init(rng, x_BHWC, train=False)
    out = model.apply(variables, x_BHWC)   # recon B×28×28×1, z B×64, logits B×4
"""
import functools
import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from ae_jax.models import output_activation as _activation
from ae_jax.models.conv import BACKGROUND, crop_to, pad_to

NUM_ROTATIONS = 4


def depth_to_space(x_BHWC, block: int = 2):
  """Pixel shuffle: B×H×W×(r²·C) → B×rH×rW×C (PyTorch PixelShuffle channel order)."""
  b, h, w, c = x_BHWC.shape
  oc = c // (block * block)
  x = x_BHWC.reshape(b, h, w, oc, block, block)
  x = x.transpose(0, 1, 4, 2, 5, 3)  # B, H, r, W, r, C
  return x.reshape(b, h * block, w * block, oc)


def space_to_depth(x_BHWC, block: int = 2):
  """Inverse of `depth_to_space`."""
  b, h, w, c = x_BHWC.shape
  x = x_BHWC.reshape(b, h // block, block, w // block, block, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)  # B, H/r, W/r, C, r, r
  return x.reshape(b, h // block, w // block, c * block * block)


class Norm(nn.Module):
  """'group' (GroupNorm with up to `groups` groups), 'batch' or 'none'."""

  kind: str = "group"
  groups: int = 8

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.kind == "group":
      return nn.GroupNorm(num_groups=math.gcd(self.groups, x.shape[-1]))(x)
    if self.kind == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    if self.kind == "none":
      return x
    raise ValueError(f"unknown norm {self.kind!r}; use 'group', 'batch' or 'none'")


class ResidualBlock(nn.Module):
  """conv3×3 → norm → act → conv3×3 → norm, + skip, act."""

  norm: str = "group"
  groups: int = 8

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = functools.partial(Norm, self.norm, self.groups)
    c = x.shape[-1]
    y = nn.Conv(c, (3, 3), padding=1, use_bias=self.norm == "none")(x)
    y = nn.relu(norm()(y, train=train))
    y = nn.Conv(c, (3, 3), padding=1, use_bias=self.norm == "none")(y)
    return nn.relu(x + norm()(y, train=train))


def _stack(x, blocks, norm, groups, train):
  for _ in range(blocks):
    x = ResidualBlock(norm, groups)(x, train=train)
  return x


class Encoder(nn.Module):
  """Stem conv, then per width: conv 2×2 stride 2 and residual blocks; Dense to the latent."""

  widths: Sequence[int]
  blocks: int
  latent_dim: int
  norm: str
  groups: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Conv(self.widths[0], (3, 3), padding=1, name="stem")(x)
    for i, w in enumerate(self.widths):
      x = nn.Conv(w, (2, 2), strides=2, padding="VALID", name=f"down{i}")(x)
      x = _stack(x, self.blocks, self.norm, self.groups, train)
    return nn.Dense(self.latent_dim, name="latent")(x.reshape(x.shape[0], -1))


class Decoder(nn.Module):
  """Dense to the bottom feature map, then per width (deepest first): residual blocks and a
  pixel-shuffle ×2; conv 3×3 to `channels`."""

  widths: Sequence[int]
  blocks: int
  bottom_hw: Sequence[int]
  channels: int
  norm: str
  groups: int

  @nn.compact
  def __call__(self, z, *, train: bool):
    bottom = (*self.bottom_hw, self.widths[-1])
    y = nn.Dense(math.prod(bottom), name="unlatent")(z).reshape(z.shape[0], *bottom)
    for i, w in enumerate((*self.widths[-2::-1], self.widths[0])):
      y = _stack(y, self.blocks, self.norm, self.groups, train)
      y = depth_to_space(nn.Conv(4 * w, (3, 3), padding=1, name=f"up{i}")(y))
    return nn.Conv(self.channels, (3, 3), padding=1, name="head")(y)


class ResNetAutoencoder(nn.Module):
  """Residual conv encoder/decoder, dense latent and a 4-way linear rotation classifier."""

  image_shape: Sequence[int]
  output_activation: str = "tanh"
  widths: Sequence[int] = (16, 32)
  blocks: int = 1
  latent_dim: int = 64
  norm: str = "group"
  groups: int = 8

  @property
  def _padded_hw(self):
    m = 2 ** len(self.widths)
    return tuple(-(-int(n) // m) * m for n in self.image_shape[:2])

  def setup(self):
    m = 2 ** len(self.widths)
    self.encoder = Encoder(self.widths, self.blocks, self.latent_dim, self.norm, self.groups)
    self.decoder = Decoder(self.widths, self.blocks, tuple(n // m for n in self._padded_hw),
                           self.image_shape[-1], self.norm, self.groups)
    self.rotation = nn.Dense(NUM_ROTATIONS)

  def encode(self, x_BHWC, *, train: bool = False):
    x = pad_to(x_BHWC, self._padded_hw, BACKGROUND[self.output_activation])
    return self.encoder(x, train=train)

  def decode(self, z_BD, *, train: bool = False):
    y = _activation(self.output_activation)(self.decoder(z_BD, train=train))
    return crop_to(y, self.image_shape[:2])

  def __call__(self, x_BHWC, *, train: bool = False):
    z = self.encode(x_BHWC, train=train)
    return {"recon": self.decode(z, train=train), "z": z, "logits": self.rotation(z)}
