"""Semi-supervised classifier (reports 000 and 003): an AE's encoder + a head, 100 labels.

Report 000 (default): encoder 784-512-512-128, head 128-64-10, Adam 1e-3, batch 8,
0.739M parameters. `get_config('003')`: report 003's BN/Dropout encoder 784-500-100-20
and a Linear(20, 10) head. `get_config('rotation')`: the main job's residual encoder.

    python -m ae_jax.main --config=configs/transfer.py --workdir=/tmp/clf            # scratch
    python -m ae_jax.main --config=configs/transfer.py --workdir=/tmp/clf2 \
        --config.mode=finetune --config.pretrained_workdir=/tmp/ae
"""
import ml_collections

from configs import default


def get_config(variant="000"):
  """The classifier of `variant` ('000', '003' or 'rotation'): from scratch, 100 labels."""
  c = default.get_config()
  c.task = "classify"  # trains through the same loop as the autoencoders (ae_jax/transfer.py)
  # The autoencoder objective's keys do not apply to a classifier; the labelled splits
  # replace val_fraction.
  for key in ("noise_std", "rotation_weight", "rotation_recon", "kl_weight", "pose_augment",
              "reconstruction_indices", "val_fraction"):
    del c[key]
  c.model = "mlp"  # the encoder is this AE's `encode`; a pretrained run must match it
  if variant == "000":
    c.arch = ml_collections.ConfigDict(dict(hidden=(512, 512), latent_dim=128, latent_relu=False))
    c.head = (64,)
  elif variant == "rotation":  # the main job's residual encoder (configs/rotation.py)
    from configs import rotation  # pylint: disable=g-import-not-at-top
    ae = rotation.get_config()
    c.model, c.arch, c.pixel_range = ae.model, ae.arch, ae.pixel_range
    c.head = (64,)
  elif variant == "003":
    c.arch = ml_collections.ConfigDict(dict(hidden=(500, 100), latent_dim=20, batch_norm=True,
                                            dropout=0.5, latent_relu=True))
    c.head = ()
  else:
    raise ValueError(f"unknown transfer variant {variant!r}; use '000', '003' or 'rotation'")
  c.mode = "scratch"  # scratch | frozen | finetune
  c.pretrained_workdir = ""
  c.labels_per_split = 100  # 100 train / 100 val / 100 test labels, stratified
  c.labelled_pool = 0  # > 0: draw the splits from a fixed pool of this size (see transfer.py)
  c.batch_size = 8
  c.learning_rate = 1e-3
  c.num_epochs = 100  # best epoch chosen on the val labels (WORKDIR/best)
  # The whole fit in one jitted call: the best-by-val state is kept on device at each epoch
  # end (eval.in_call; False: a call, an eval line and a host eval per epoch).
  c.eval.in_call = True
  c.steps_per_call = 100_000
  c.checkpoint.every_epochs = 25  # resume points; the best-by-val state is kept apart
  c.checkpoint.keep = 1
  c.encoder_lr_scale = 1.0  # finetune: the encoder's learning rate relative to the head's
  # Self-training: refit with the `per_class`·round most confident predictions on the
  # unlabelled images per class added as labels (0 rounds = plain transfer).
  c.self_train = ml_collections.ConfigDict(dict(rounds=0, per_class=100))
  c.augment = False
  c.aug_degrees = 10.0
  c.aug_shift = 2.0
  return c
