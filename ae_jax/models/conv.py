"""Report 001's convolutional autoencoder, plus the pad/crop helpers the conv models share.

Encoder: Conv C→16 (3×3, stride 2, pad 1) → ReLU → Conv 16→32 (3×3, s2, p1) → ReLU →
Conv 32→64 (5×5, VALID) = latent, flattened to a vector. Decoder (PyTorch ConvTranspose2d
semantics): 64→32 (5×5) → ReLU → 32→16 (3×3, s2, p1, output_padding 1) → ReLU →
16→C (3×3, s2, p2, output_padding 1) → output activation.

Sizes: this stack maps an n×n image back to n×n exactly when n = 4k − 2 (report 001's
26×26 is one such size). Other inputs are padded symmetrically with the background value
(0 for sigmoid, −1 for tanh) to the next such size and the reconstruction is cropped back:
28×28 → 30×30 (latent 4×4×64 = 1,024-D), 32×32 → 34×34 (latent 5×5×64 = 1,600-D).

Parameters: 289·C + 111,776, i.e. 112,065 for C = 1 and 112,643 for C = 3.

    model = ConvAutoencoder(image_shape=(28, 28, 1), output_activation='sigmoid')
    variables = model.init(rng, x_BHWC, train=False)   # 112,065 parameters
    out = model.apply(variables, x_BHWC)                 # out['recon']: B×28×28×1, out['z']: B×1024
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from ae_jax.models import output_activation as _activation

BACKGROUND = {"sigmoid": 0.0, "tanh": -1.0, "linear": 0.0}


def pad_to(x_BHWC, size_hw, value=0.0):
  """Pads H and W symmetrically (the odd pixel after) up to `size_hw` with `value`."""
  (h, w), (th, tw) = x_BHWC.shape[1:3], size_hw
  if (h, w) == (th, tw):
    return x_BHWC
  pads = ((0, 0), ((th - h) // 2, th - h - (th - h) // 2), ((tw - w) // 2, tw - w - (tw - w) // 2),
          (0, 0))
  return jnp.pad(x_BHWC, pads, constant_values=value)


def crop_to(x_BHWC, size_hw):
  """Inverse of `pad_to`: the central `size_hw` window."""
  (h, w), (th, tw) = x_BHWC.shape[1:3], size_hw
  top, left = (h - th) // 2, (w - tw) // 2
  return x_BHWC[:, top:top + th, left:left + tw, :]


def torch_transpose_padding(kernel: int, padding: int, output_padding: int = 0):
  """flax `ConvTranspose` explicit padding equal to PyTorch's (padding, output_padding).

  Output size (n − 1)·stride + kernel − 2·padding + output_padding, as in PyTorch.
  """
  lo = kernel - 1 - padding
  return ((lo, lo + output_padding),) * 2


def _fit_size(n: int) -> int:
  """Smallest m ≥ n with m ≡ 2 (mod 4), the sizes this encoder/decoder pair round-trips."""
  return n + (2 - n) % 4


class ConvAutoencoder(nn.Module):
  """Report 001's 3-conv / 3-transposed-conv autoencoder; channels follow the input."""

  image_shape: Sequence[int]
  output_activation: str = "sigmoid"

  @property
  def _padded_hw(self):
    return tuple(_fit_size(int(n)) for n in self.image_shape[:2])

  @property
  def _latent_hw(self):
    return tuple((n + 3) // 4 - 4 for n in self._padded_hw)

  def setup(self):
    self.conv1 = nn.Conv(16, (3, 3), strides=2, padding=((1, 1), (1, 1)))
    self.conv2 = nn.Conv(32, (3, 3), strides=2, padding=((1, 1), (1, 1)))
    self.conv3 = nn.Conv(64, (5, 5), padding="VALID")
    self.tconv1 = nn.ConvTranspose(32, (5, 5), padding=torch_transpose_padding(5, 0))
    self.tconv2 = nn.ConvTranspose(16, (3, 3), strides=(2, 2),
                                   padding=torch_transpose_padding(3, 1, 1))
    self.tconv3 = nn.ConvTranspose(self.image_shape[-1], (3, 3), strides=(2, 2),
                                   padding=torch_transpose_padding(3, 2, 1))

  def encode(self, x_BHWC, *, train: bool = False):
    del train  # no BatchNorm or Dropout
    x = pad_to(x_BHWC, self._padded_hw, BACKGROUND[self.output_activation])
    x = nn.relu(self.conv1(x))
    x = nn.relu(self.conv2(x))
    return self.conv3(x).reshape(x.shape[0], -1)

  def decode(self, z_BD, *, train: bool = False):
    del train
    y = z_BD.reshape(z_BD.shape[0], *self._latent_hw, 64)
    y = nn.relu(self.tconv1(y))
    y = nn.relu(self.tconv2(y))
    y = _activation(self.output_activation)(self.tconv3(y))
    return crop_to(y, self.image_shape[:2])

  def __call__(self, x_BHWC, *, train: bool = False):
    z = self.encode(x_BHWC, train=train)
    return {"recon": self.decode(z, train=train), "z": z}
