"""Report 001's convolutional autoencoder: 3 convs (C→16→32→64) and 3 PyTorch-style transposed
convs, sigmoid, MSE, Adam 1e-3 with L2 weight decay 1e-5, batch 61, 100 epochs.
112,065 parameters on 28×28×1 (padded to 30×30 inside the model, see ae_jax/models/conv.py).

    python -m ae_jax.main --config=configs/conv.py --workdir=runs/conv
"""
from configs import default


def get_config():
  """Report 001's conv AE training config (default.py with the fields below changed)."""
  c = default.get_config()
  c.model = "conv"
  c.batch_size = 61
  c.num_epochs = 100
  c.learning_rate = 1e-3
  c.optimizer = "adam"  # L2 added to the gradient, as PyTorch's Adam(weight_decay=1e-5)
  c.weight_decay = 1e-5
  return c
