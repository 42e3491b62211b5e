"""Report 002's exact recipe on the main job's residual AE: every training image is turned by
a random multiple of 90° and reconstructed turned, and a linear rotation classifier reads the
latent (loss = MSE + 10 · CE); no pose augmentation, 20 epochs.

    python -m ae_jax.main --config=configs/rotation_report002.py --workdir=runs/report002_recipe
"""
from configs import rotation


def get_config():
  """Report 002's recipe on the main job's residual AE (rotation.py with these changes)."""
  c = rotation.get_config()
  c.rotation_weight = 10.0
  c.rotation_recon = "rotated"
  c.arch.rotation_head = "latent"
  c.pose_augment.max_degrees = 0.0
  c.pose_augment.max_shift = 0.0
  c.min_steps = 0
  c.num_epochs = 20
  return c
