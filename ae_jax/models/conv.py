"""Report 001's convolutional autoencoder.

Encoder: Conv C→16 (3×3, stride 2, pad 1) → ReLU → Conv 16→32 (3×3, s2, p1) → ReLU →
Conv 32→64 (5×5, VALID) = latent, flattened to a vector. Decoder (PyTorch ConvTranspose2d
semantics): 64→32 (5×5) → ReLU → 32→16 (3×3, s2, p1, output_padding 1) → ReLU →
16→C (3×3, s2, p2, output_padding 1) → output activation.

Sizes: this stack maps an n×n image back to n×n exactly when n = 4k − 2 (report 001's
26×26 is one such size). Other inputs are padded symmetrically with the background value
(0 for sigmoid, −1 for tanh) to the next such size and the reconstruction is cropped back:
28×28 → 30×30 (latent 4×4×64 = 1,024-D), 32×32 → 34×34 (latent 5×5×64 = 1,600-D).

Parameters: 289·C + 111,776, i.e. 112,065 for C = 1 and 112,643 for C = 3.

    model = ConvAutoencoder(image_shape=(28, 28, 1), pixel_range=pixels.UNIT)
    variables = model.init(rng, x_BHWC, train=False)   # 112,065 parameters
    out = model.apply(variables, x_BHWC)                 # out['recon']: B×28×28×1, out['z']: B×1024
"""
import functools
from typing import Sequence

import flax.linen as nn

from ae_jax import backend, pixels
from ae_jax.models import output_activation as _activation
from ae_jax.models.layers import conv_transpose, crop_to, pad_to


def _fit_size(n: int) -> int:
  """Smallest m ≥ n with m ≡ 2 (mod 4), the sizes this encoder/decoder pair round-trips."""
  return n + (2 - n) % 4


class ConvAutoencoder(nn.Module):
  """Report 001's 3-conv / 3-transposed-conv autoencoder; channels follow the input."""

  image_shape: Sequence[int]
  pixel_range: pixels.PixelRange = pixels.UNIT  # inputs arrive and recons leave in it
  impl: backend.Impl = backend.STOCK  # how the convs run; models.build picks it by backend

  @property
  def _padded_hw(self):
    return tuple(_fit_size(int(n)) for n in self.image_shape[:2])

  @property
  def _latent_hw(self):
    return tuple((n + 3) // 4 - 4 for n in self._padded_hw)

  def setup(self):
    conv = functools.partial(nn.Conv, conv_general_dilated=self.impl.conv)
    tconv = functools.partial(conv_transpose, conv_general_dilated=self.impl.conv)
    self.conv1 = conv(16, (3, 3), strides=2, padding=1)
    self.conv2 = conv(32, (3, 3), strides=2, padding=1)
    self.conv3 = conv(64, (5, 5), padding="VALID")
    self.tconv1 = tconv(32, 5)
    self.tconv2 = tconv(16, 3, stride=2, padding=1, output_padding=1)
    self.tconv3 = tconv(self.image_shape[-1], 3, stride=2, padding=2, output_padding=1)

  def encode(self, x_BHWC, *, train: bool = False):
    """Images in `pixel_range` → latents (B, D)."""
    del train  # no BatchNorm or Dropout
    x = pad_to(x_BHWC, self._padded_hw, self.pixel_range.low)
    x = nn.relu(self.conv1(x))
    x = nn.relu(self.conv2(x))
    return self.conv3(x).reshape(x.shape[0], -1)

  def decode(self, z_BD, *, train: bool = False):
    """Latents (B, D) → images in `pixel_range`."""
    del train
    y = z_BD.reshape(z_BD.shape[0], *self._latent_hw, 64)
    y = nn.relu(self.tconv1(y))
    y = nn.relu(self.tconv2(y))
    y = _activation(self.pixel_range.activation)(self.tconv3(y))
    return crop_to(y, self.image_shape[:2])

  def __call__(self, x_BHWC, *, train: bool = False):
    z = self.encode(x_BHWC, train=train)
    return {"recon": self.decode(z, train=train), "z": z}
