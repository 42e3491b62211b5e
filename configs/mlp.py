"""Report 004's MLP autoencoder: 784-392-8-392-784, ReLU incl. the bottleneck, sigmoid, MSE,
Adam 1e-3, ReduceLROnPlateau(patience 5) on the epoch loss, 50 epochs. 622,504 parameters.

    python -m ae_jax.main --config=configs/mlp.py --workdir=/tmp/mlp
"""
from configs import default


def get_config():
  """Report 004's MLP AE training config."""
  c = default.get_config()
  c.model = "mlp"
  c.arch.hidden = (392,)
  c.arch.latent_dim = 8
  c.arch.latent_relu = True
  c.arch.batch_norm = False
  c.arch.dropout = 0.0
  c.plateau.patience = 5
  c.batch_size = 32  # report 004 gives none; 140 steps per epoch on mnist_5k's 4,500 train images
  c.num_epochs = 50
  return c


def get_sweep():
  """Latent sizes: python -m ae_jax.sweep --config=configs/mlp.py --workdir=runs/mlp_latent"""
  return {"arch.latent_dim": [2, 8, 32]}
