"""Gaussian VAE: MLP 784-512-(2·16) encoder, 16-D latent, 16-512-784 decoder, sigmoid,
MSE + kl_weight · KL (per pixel), Adam 1e-3, batch 128, 50 epochs. 829,232 parameters.

    python -m ae_jax.main --config=configs/vae.py --workdir=runs/vae
"""
from configs import default


def get_config():
  """The Gaussian VAE's training config."""
  c = default.get_config()
  c.model = "vae"
  c.arch.hidden = (512,)
  c.arch.latent_dim = 16
  c.kl_weight = 1.0
  c.batch_size = 128
  c.num_epochs = 50
  c.learning_rate = 1e-3
  return c
