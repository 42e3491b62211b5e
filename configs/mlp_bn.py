"""Report 003's BatchNorm/Dropout MLP autoencoder: 784-500-100-20-100-500-784, each hidden
layer Linear → BatchNorm → ReLU → Dropout(0.5), the 20-D latent Linear → BatchNorm → ReLU,
sigmoid output, MSE, Adam 1e-3, batch 256. 892,444 parameters
(BatchNorm scale and bias included).

    python -m ae_jax.main --config=configs/mlp_bn.py --workdir=runs/mlp_bn
"""
from configs import default


def get_config():
  """Report 003's BatchNorm/Dropout MLP AE training config."""
  c = default.get_config()
  c.model = "mlp_bn"
  c.arch.hidden = (500, 100)
  c.arch.latent_dim = 20
  c.arch.batch_norm = True
  c.arch.dropout = 0.5
  c.arch.latent_relu = True
  c.batch_size = 256
  c.num_epochs = 50
  c.learning_rate = 1e-3
  return c
