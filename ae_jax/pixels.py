"""The pixel range a model works in, parsed once from `config.pixel_range`.

Datasets hold [0, 1] images; a model sees them in its own range and decodes into it.
`models.build` stores the parsed value on the model (`model.pixel_range`), so losses,
inference and figures read it there instead of re-reading the config string.

    from ae_jax import pixels
    pr = pixels.parse("-1,1")        # PixelRange(name='-1,1', low=-1.0, activation='tanh')
    x = pr.to_model(x01_BHWC)        # [0, 1] → [-1, 1]
    x01_BHWC = pr.to_unit(x)         # and back
"""
from typing import NamedTuple

from ae_jax import errors


class PixelRange(NamedTuple):
  """name: as in config.pixel_range; low: the value of black (and of padded borders);
  activation: the decoder's output nonlinearity onto [low, 1]."""
  name: str
  low: float
  activation: str

  def to_model(self, x01):
    """[0, 1] images → this range."""
    return x01 if self.low == 0 else x01 * 2.0 - 1.0

  def to_unit(self, x):
    """Images in this range → [0, 1]."""
    return x if self.low == 0 else (x + 1.0) / 2.0


UNIT = PixelRange("0,1", 0.0, "sigmoid")
SIGNED = PixelRange("-1,1", -1.0, "tanh")
RANGES = {r.name: r for r in (UNIT, SIGNED)}


def parse(name):
  """The `PixelRange` named by `config.pixel_range`; UserError for any other value."""
  if name not in RANGES:
    raise errors.UserError(f"config.pixel_range must be one of {sorted(RANGES)}, got {name!r}")
  return RANGES[name]
