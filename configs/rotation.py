"""Main job: report 002's residual autoencoder with the rotation task, built for clustering.

Pixels in [-1, 1] with a tanh output. The AE reconstructs the clean, upright image from an
input turned by up to ±8° and shifted by up to ±1.5 px (pose augmentation); a second encoder
pass over copies turned by random multiples of 90° feeds a linear rotation classifier on the
flattened feature maps (not the latent), and the loss is MSE + 1 · CE of that classifier
(β = 1: at 10 the CE swamped the MSE on report 002's photo patches).
So the encoder learns orientation-aware features while the latent, used for clustering, only
ever sees upright images (`arch.embedding="features"` clusters the feature maps instead).
Residual blocks (GroupNorm) at 14×14×16 and 7×7×32, pixel-shuffle decoder, 64-D latent
(ae_jax/models/resnet.py). Training runs at least 2,000 steps (more epochs on small
datasets). Report 002's own recipe is configs/rotation_report002.py.

    python -m ae_jax.main --config=configs/rotation.py --workdir=runs/rotation
    python -m ae_jax.cluster --config=configs/cluster.py --workdir=runs/rotation
"""
from configs import default


def get_config():
  """The main job's training config: the residual rotation AE built for clustering."""
  c = default.get_config()
  c.model = "resnet"
  c.pixel_range = "-1,1"
  c.rotation_weight = 1.0  # β; experiments/README.md#the-rotation-task-rotation_ablationpy
  c.rotation_recon = "upright"  # the latent sees upright images only
  c.pose_augment.max_degrees = 8.0
  c.pose_augment.max_shift = 1.5
  c.arch.widths = (16, 32)
  c.arch.blocks = (1, 1)
  c.arch.latent_dim = 64
  c.arch.norm = "group"
  c.arch.groups = 8
  c.arch.rotation_head = "features"  # a head on the latent would make it encode orientation
  # What is clustered: z. "features" (the maps the rotation head reads) wins some image sets
  # by 0.1 and loses others by as much; experiments/README.md#the-embedding-z-or-the-encoders-feature-maps
  c.arch.embedding = "latent"
  c.batch_size = 128
  c.num_epochs = 20
  c.min_steps = 2000
  c.learning_rate = 2e-3
  return c


def get_sweep():
  """β = rotation_weight: python -m ae_jax.sweep --config=configs/rotation.py --workdir=runs/beta"""
  return {"rotation_weight": [0.0, 1.0, 10.0]}
