"""Plain PyTorch twins of ae_jax's autoencoders, for the training benchmark (bench_train.py).

Each twin is built from the Linen module ae_jax builds, so both sides have the same
architecture and the same parameter count (checked by the benchmark). NCHW, eager mode.

    import torch
    from ae_jax import models
    from configs import mlp
    flax_model = models.build(mlp.get_config(), (28, 28, 1))
    net = torch_reference.build(flax_model)          # 622,504 parameters
    out = net(torch.zeros(8, 1, 28, 28))             # {'recon': 8×1×28×28}
"""
import math

import torch
from torch import nn
from torch.nn import functional as F



def _act(name):
  return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "linear": lambda x: x}[name]


class MLP(nn.Module):
  """ae_jax.models.mlp.MLPAutoencoder without BatchNorm/Dropout."""

  def __init__(self, m):
    super().__init__()
    d = math.prod(m.image_shape)
    enc = [d, *m.hidden, m.latent_dim]
    dec = [m.latent_dim, *reversed(m.hidden), d]
    self.enc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(enc[:-1], enc[1:]))
    self.dec = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dec[:-1], dec[1:]))
    self.latent_relu, self.act, self.shape = m.latent_relu, _act(m.pixel_range.activation), m.image_shape

  def forward(self, x):
    h = x.flatten(1)
    for i, layer in enumerate(self.enc):
      h = layer(h)
      if i < len(self.enc) - 1 or self.latent_relu:
        h = F.relu(h)
    for i, layer in enumerate(self.dec):
      h = layer(h)
      if i < len(self.dec) - 1:
        h = F.relu(h)
    return {"recon": self.act(h).reshape(x.shape)}


def _pad(x, size_hw, value):
  (h, w), (th, tw) = x.shape[2:], size_hw
  return F.pad(x, ((tw - w) // 2, tw - w - (tw - w) // 2, (th - h) // 2, th - h - (th - h) // 2),
               value=value)


def _crop(x, size_hw):
  (h, w), (th, tw) = x.shape[2:], size_hw
  top, left = (h - th) // 2, (w - tw) // 2
  return x[:, :, top:top + th, left:left + tw]


class ConvAE(nn.Module):
  """ae_jax.models.conv.ConvAutoencoder (report 001)."""

  def __init__(self, m):
    super().__init__()
    c = m.image_shape[-1]
    self.m = m
    self.enc = nn.ModuleList([nn.Conv2d(c, 16, 3, 2, 1), nn.Conv2d(16, 32, 3, 2, 1),
                              nn.Conv2d(32, 64, 5)])
    self.dec = nn.ModuleList([nn.ConvTranspose2d(64, 32, 5), nn.ConvTranspose2d(32, 16, 3, 2, 1, 1),
                              nn.ConvTranspose2d(16, c, 3, 2, 2, 1)])

  def forward(self, x):
    m = self.m
    h = _pad(x, m._padded_hw, m.pixel_range.low)
    h = self.enc[2](F.relu(self.enc[1](F.relu(self.enc[0](h)))))
    y = F.relu(self.dec[1](F.relu(self.dec[0](h))))
    return {"recon": _crop(_act(m.pixel_range.activation)(self.dec[2](y)), m.image_shape[:2])}


def _norm(kind, groups, c):
  if kind == "group":
    return nn.GroupNorm(math.gcd(groups, c), c)
  return nn.BatchNorm2d(c, momentum=0.1) if kind == "batch" else nn.Identity()


class Block(nn.Module):
  def __init__(self, c, norm, groups):
    super().__init__()
    bias = norm == "none"
    self.c1, self.c2 = nn.Conv2d(c, c, 3, 1, 1, bias=bias), nn.Conv2d(c, c, 3, 1, 1, bias=bias)
    self.n1, self.n2 = _norm(norm, groups, c), _norm(norm, groups, c)

  def forward(self, x):
    return F.relu(x + self.n2(self.c2(F.relu(self.n1(self.c1(x))))))


class ResNetAE(nn.Module):
  """ae_jax.models.resnet.ResNetAutoencoder: residual encoder/decoder and rotation head."""

  def __init__(self, m):
    super().__init__()
    self.m, w, c = m, tuple(m.widths), m.image_shape[-1]
    blocks = lambda width, n: [Block(width, m.norm, m.groups) for _ in range(n)]
    enc = []
    for i, (prev, width) in enumerate(zip((c, *w[:-1]), w)):
      enc += [nn.Conv2d(prev, width, 2, 2), *blocks(width, m.blocks[i])]
    self.enc = nn.Sequential(*enc)
    scale = 2 ** len(w)
    self.bottom = (w[-1], *(n // scale for n in m._padded_hw))
    self.latent = nn.Linear(math.prod(self.bottom), m.latent_dim)
    self.unlatent = nn.Linear(m.latent_dim, math.prod(self.bottom))
    dec, prev = [], w[-1]
    for i, width in enumerate((*w[-2::-1], c)):
      dec += [*blocks(prev, m.blocks[-1 - i]), nn.Conv2d(prev, 4 * width, 3, 1, 1),
              nn.PixelShuffle(2)]
      prev = width
    self.dec = nn.Sequential(*dec)
    self.on_features = m.rotation_head == "features"  # else on the latent (report 002)
    self.rotation = nn.Linear(math.prod(self.bottom) if self.on_features else m.latent_dim, 4)

  def _features(self, x):
    h = self.enc(_pad(x, self.m._padded_hw, self.m.pixel_range.low))
    # Flatten in NHWC order as the Linen model does (only matters for weight transfer).
    return h.permute(0, 2, 3, 1).flatten(1)

  def rotation_logits(self, x):
    """The encoder and the rotation head alone, as the Linen model's `rotation_logits`."""
    h = self._features(x)
    return self.rotation(h if self.on_features else self.latent(h))

  def forward(self, x):
    m = self.m
    h = self._features(x)
    z = self.latent(h)
    y = self.unlatent(z).reshape(x.shape[0], *self.bottom[1:], self.bottom[0]).permute(0, 3, 1, 2)
    recon = _crop(_act(m.pixel_range.activation)(self.dec(y)), m.image_shape[:2])
    return {"recon": recon, "z": z, "logits": self.rotation(h if self.on_features else z)}


def build(flax_model):
  name = type(flax_model).__name__
  if name == "MLPAutoencoder":
    if flax_model.batch_norm or flax_model.dropout:
      raise NotImplementedError("no PyTorch twin for the BatchNorm/Dropout MLP")
    return MLP(flax_model)
  if name == "ConvAutoencoder":
    return ConvAE(flax_model)
  if name == "ResNetAutoencoder":
    return ResNetAE(flax_model)
  raise NotImplementedError(f"no PyTorch twin for {name}")


def rotate_batch(x_BCHW, k_B):
  rots = torch.stack([torch.rot90(x_BCHW, r, (2, 3)) for r in range(4)])
  return rots[k_B, torch.arange(x_BCHW.shape[0])]


def random_affine(x01_BCHW, max_degrees, max_shift):
  """ae_jax.augment.random_affine: per-example turn in ±max_degrees about the centre and
  shift in ±max_shift pixels, bilinear, 0 outside (square images)."""
  b, _, h, w = x01_BCHW.shape
  theta = torch.deg2rad(torch.empty(b).uniform_(-max_degrees, max_degrees))
  shift = torch.empty(b, 2).uniform_(-max_shift, max_shift)
  sy, sx = shift[:, 0] * 2 / (h - 1), shift[:, 1] * 2 / (w - 1)  # in affine_grid's [-1, 1]
  cos, sin = theta.cos(), theta.sin()
  mat = torch.stack([torch.stack([cos, sin, -(cos * sx + sin * sy)], 1),
                     torch.stack([-sin, cos, sin * sx - cos * sy], 1)], 1)
  grid = F.affine_grid(mat, list(x01_BCHW.shape), align_corners=True)
  return F.grid_sample(x01_BCHW, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def train_steps(net, opt, images_NCHW, perm, first, count, batch, config, scale):
  """`count` Adam steps over batches perm[first*batch ...]; returns the summed loss (a tensor).

  The same work as ae_jax.losses.per_example for `config`: `scale`/offset maps [0,1] pixels
  to the model's range; `pose_augment` turns and shifts the inputs (targets stay clean);
  `rotation_weight > 0` adds the rotation task, with `rotation_recon="upright"` as a second
  encoder pass over turned copies of the inputs.
  """
  aug = config.get("pose_augment")
  degrees, shift = (aug.max_degrees, aug.max_shift) if aug is not None else (0.0, 0.0)
  beta = config.get("rotation_weight", 0.0)
  upright = config.get("rotation_recon", "rotated") == "upright"
  total = torch.zeros(())
  for i in range(first, first + count):
    x01 = images_NCHW[perm[i * batch:(i + 1) * batch]]
    moved01 = random_affine(x01, degrees, shift) if degrees > 0 or shift > 0 else x01
    x, inputs = x01 * scale[0] + scale[1], moved01 * scale[0] + scale[1]
    if beta > 0:
      k = torch.randint(0, 4, (batch,))
      if not upright:
        x, inputs = rotate_batch(x, k), rotate_batch(inputs, k)
    out = net(inputs)
    loss = F.mse_loss(out["recon"], x)
    if beta > 0:
      logits = net.rotation_logits(rotate_batch(inputs, k)) if upright else out["logits"]
      loss = loss + beta * F.cross_entropy(logits, k)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    total += loss.detach()
  return total
