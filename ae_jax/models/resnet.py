"""Residual autoencoder with a 4-way rotation classifier (report 002's improved model).

Encoder: per stage i, a downsampling conv 2×2 stride 2 to widths[i] (the first one turns
2×2 pixel patches into features) and blocks[i] residual blocks; flatten → Dense(latent_dim) = z.
Rotation head: Dense(4) → out['logits'] (which of 0/90/180/270° the input was turned by; the
training step applies the rotations), on z (`rotation_head='latent'`, report 002) or on the
flattened maps that feed the latent (`'features'`, the main job: a head on z makes z encode
orientation, which ruins its clusters; experiments/README.md#the-rotation-task-rotation_ablationpy).
`rotation_logits` runs the encoder and the head alone. `embed` is what clustering and
`ae_jax.embed` read: z (`embedding='latent'`, the main job), the flattened maps (`'features'`:
the maps the rotation task trains, which both the head and z read) or both side by side;
experiments/README.md#the-embedding-z-or-the-encoders-feature-maps.
Decoder (mirror): Dense → reshape to the bottom feature map → per stage, deepest first,
blocks[i] residual blocks and a pixel-shuffle upsample (conv 3×3 to 4× the next width, then
depth-to-space); the last one produces the C image channels → output activation (tanh for
data in [-1, 1]).

Residual block: conv3×3 → norm → ReLU → conv3×3 → norm, plus the input, ReLU after the add.
Norm: 'group' (GroupNorm, default), 'batch' (BatchNorm, `use_running_average=not train`)
or 'none'.

Sizes: H and W are padded symmetrically with the background value (−1 for tanh, 0 for
sigmoid) to multiples of 2**len(widths) and the reconstruction is cropped back; with two
stages 28×28 and 32×32 need no padding.

Speed: XLA:CPU's convolution backward pass is the bottleneck, so the defaults keep every
conv at 14×14 or 7×7 with 16 or 32 channels. Parameters with the defaults (widths (16, 32),
blocks (1, 1), latent 64): 270,296 for 28×28×1 and 333,504 for 32×32×3; with the head on
the features (the main job) 276,312 and 341,440.

    model = ResNetAutoencoder(image_shape=(28, 28, 1), pixel_range=pixels.SIGNED)
    variables = model.init(rng, x_BHWC, train=False)
    out = model.apply(variables, x_BHWC)   # recon B×28×28×1, z B×64, logits B×4
"""
import functools
import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from ae_jax import backend, pixels
from ae_jax.models import output_activation as _activation
from ae_jax.models.layers import crop_to, depth_to_space, pad_to

NUM_ROTATIONS = 4


class Norm(nn.Module):
  """'group' (GroupNorm with up to `groups` groups), 'batch' or 'none'."""

  kind: str = "group"
  groups: int = 8
  impl: backend.Impl = backend.STOCK

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.kind == "group":
      return self.impl.group_norm(num_groups=math.gcd(self.groups, x.shape[-1]), epsilon=1e-6)(x)
    if self.kind == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    if self.kind == "none":
      return x
    raise ValueError(f"unknown norm {self.kind!r}; use 'group', 'batch' or 'none'")


class ResidualBlock(nn.Module):
  """conv3×3 → norm → ReLU → conv3×3 → norm, + skip, ReLU."""

  norm: str = "group"
  groups: int = 8
  impl: backend.Impl = backend.STOCK

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(nn.Conv, x.shape[-1], (3, 3), padding=1,
                             use_bias=self.norm == "none", conv_general_dilated=self.impl.conv)
    norm = functools.partial(Norm, self.norm, self.groups, self.impl)
    y = nn.relu(norm()(conv()(x), train=train))
    return nn.relu(x + norm()(conv()(y), train=train))


class _Stages(nn.Module):
  """Fields shared by the encoder and decoder."""

  widths: Sequence[int]
  blocks: Sequence[int]
  norm: str = "group"
  groups: int = 8
  impl: backend.Impl = backend.STOCK

  def residual(self, x, stage, train):
    for _ in range(self.blocks[stage]):
      x = ResidualBlock(self.norm, self.groups, self.impl)(x, train=train)
    return x


class Encoder(_Stages):
  """Per stage: conv 2×2 stride 2 and residual blocks; returns the flattened maps and their
  Dense projection, the latent."""

  latent_dim: int = 64

  @nn.compact
  def __call__(self, x, *, train: bool):
    for i, w in enumerate(self.widths):
      x = nn.Conv(w, (2, 2), strides=2, padding="VALID", conv_general_dilated=self.impl.conv,
                  name=f"down{i}")(x)
      x = self.residual(x, i, train)
    h = x.reshape(x.shape[0], -1)
    return h, nn.Dense(self.latent_dim, name="latent")(h)


class Decoder(_Stages):
  """Dense to the bottom feature map; per stage, deepest first: residual blocks and a
  pixel-shuffle ×2 to the next shallower width, the last one to `channels`."""

  bottom_hw: Sequence[int] = (7, 7)
  channels: int = 1

  @nn.compact
  def __call__(self, z, *, train: bool):
    bottom = (*self.bottom_hw, self.widths[-1])
    y = nn.Dense(math.prod(bottom), name="unlatent")(z).reshape(z.shape[0], *bottom)
    for i, w in enumerate((*self.widths[-2::-1], self.channels)):
      y = self.residual(y, len(self.widths) - 1 - i, train)
      y = nn.Conv(4 * w, (3, 3), padding=1, conv_general_dilated=self.impl.conv, name=f"up{i}")(y)
      y = depth_to_space(y)
    return y


class ResNetAutoencoder(nn.Module):
  """Residual conv encoder/decoder, dense latent and a 4-way linear rotation classifier."""

  image_shape: Sequence[int]
  pixel_range: pixels.PixelRange = pixels.SIGNED  # inputs arrive and recons leave in it
  widths: Sequence[int] = (16, 32)
  blocks: Sequence[int] = (1, 1)  # residual blocks per stage (encoder; mirrored in the decoder)
  latent_dim: int = 64
  norm: str = "group"
  groups: int = 8
  impl: backend.Impl = backend.STOCK  # how convs and GroupNorm run; models.build picks it by backend
  rotation_head: str = "latent"  # or "features": the flattened maps that feed the latent
  embedding: str = "latent"  # what `embed` returns: z, "features" (the flattened maps) or "both"

  @property
  def _padded_hw(self):
    m = 2 ** len(self.widths)
    return tuple(-(-int(n) // m) * m for n in self.image_shape[:2])

  def setup(self):
    if self.rotation_head not in ("latent", "features"):
      raise ValueError(f"rotation_head must be 'latent' or 'features', got {self.rotation_head!r}")
    if self.embedding not in ("latent", "features", "both"):
      raise ValueError(f"embedding must be 'latent', 'features' or 'both', got {self.embedding!r}")
    if len(self.blocks) != len(self.widths):
      raise ValueError(f"blocks {tuple(self.blocks)} needs one entry per width {tuple(self.widths)}")
    stages = dict(widths=tuple(self.widths), blocks=tuple(self.blocks), norm=self.norm,
                  groups=self.groups, impl=self.impl)
    m = 2 ** len(self.widths)
    self.encoder = Encoder(**stages, latent_dim=self.latent_dim)
    self.decoder = Decoder(**stages, bottom_hw=tuple(n // m for n in self._padded_hw),
                           channels=self.image_shape[-1])
    self.rotation = nn.Dense(NUM_ROTATIONS)

  def _encode(self, x_BHWC, train):
    x = pad_to(x_BHWC, self._padded_hw, self.pixel_range.low)
    return self.encoder(x, train=train)

  def encode(self, x_BHWC, *, train: bool = False):
    """Images in `pixel_range` → latents (B, D)."""
    return self._encode(x_BHWC, train)[1]

  def embed(self, x_BHWC, *, train: bool = False):
    """Images in `pixel_range` → embeddings (B, E): z, the flattened encoder maps, or both
    side by side (z is a projection of the maps, and their norms come out alike)."""
    h, z = self._encode(x_BHWC, train)
    return {"latent": z, "features": h, "both": jnp.concatenate([h, z], axis=-1)}[self.embedding]

  def decode(self, z_BD, *, train: bool = False):
    """Latents (B, D) → images in `pixel_range`."""
    y = _activation(self.pixel_range.activation)(self.decoder(z_BD, train=train))
    return crop_to(y, self.image_shape[:2])

  def rotation_logits(self, x_BHWC, *, train: bool = False):
    """The rotation head alone (encoder, no decoder): B×4 logits."""
    h, z = self._encode(x_BHWC, train)
    return self.rotation(h if self.rotation_head == "features" else z)

  def __call__(self, x_BHWC, *, train: bool = False):
    h, z = self._encode(x_BHWC, train)
    logits = self.rotation(h if self.rotation_head == "features" else z)
    return {"recon": self.decode(z, train=train), "z": z, "logits": logits}
