"""Defaults shared by every training config; a model config imports this and changes a few fields.

    python -m ae_jax.main --config=configs/mlp.py --workdir=/tmp/mlp --config.num_epochs=2
"""
import ml_collections


def get_config():
  """The shared training defaults: mnist_5k, the MLP model, Adam 1e-3, batch 256, 50 epochs."""
  c = ml_collections.ConfigDict()
  # Data: a spec string (see README), the TFDS data dir ('' = TFDS default), split and range.
  c.dataset = "mnist_5k"
  c.data_dir = ""
  c.val_fraction = 0.1
  c.pixel_range = "0,1"  # or "-1,1"; decides the output activation (sigmoid / tanh)

  c.model = "mlp"
  c.arch = ml_collections.ConfigDict()

  c.seed = 0
  c.batch_size = 256
  c.num_epochs = 50
  c.min_steps = 0  # train at least this many steps: more epochs on small datasets
  c.learning_rate = 1e-3
  c.optimizer = "adam"  # "adam": L2 added to the gradient (PyTorch Adam); "adamw": decoupled
  c.weight_decay = 0.0
  c.plateau = ml_collections.ConfigDict(dict(patience=0, factor=0.1, rtol=1e-4, cooldown=0))

  # Objective terms; each is off at its default.
  c.noise_std = 0.0  # denoising: Gaussian input noise, clean targets
  c.rotation_weight = 0.0  # β · CE of the rotation classifier (rotation model)
  # What the AE reconstructs while the rotation task is on: "rotated" (report 002: the turned
  # images) or "upright" (the clean images; the head reads a second pass over turned copies).
  c.rotation_recon = "rotated"
  c.kl_weight = 1.0  # VAE only
  # Pose-invariant inputs: random rotation (±degrees) and shift (±pixels), clean targets.
  c.pose_augment = ml_collections.ConfigDict(dict(max_degrees=0.0, max_shift=0.0))

  # Input path: None streams the training set from disk (ae_jax/stream.py) only when it
  # exceeds stream_budget_mb (0: a quarter of one device's memory); True/False force it.
  c.stream = ml_collections.config_dict.placeholder(bool)
  c.stream_budget_mb = 0
  c.stream_threads = 4  # grain threads reading batches ahead

  # Loop, logging, checkpoints.
  c.steps_per_call = 0  # steps per jitted call (a fori_loop; 1: no loop; 0: ae_jax/backend.py picks)
  c.log_every_steps = 50
  c.eval_batch_size = 1000
  # Evaluate and checkpoint when any set cadence is due (0 switches one off). A checkpoint is
  # also written at the end and on SIGTERM, but never sooner than min_seconds after the last.
  # in_call (a classifier): evaluate inside the jitted call and keep the best state there, so
  # calls span whole epochs (a whole fit can be one call); eval lines are written at call ends.
  c.eval = ml_collections.ConfigDict(dict(every_epochs=1, every_steps=0, every_seconds=0.,
                                          in_call=False))
  c.checkpoint = ml_collections.ConfigDict(dict(
      every_epochs=1, every_steps=0, every_seconds=0., min_seconds=30., keep=3, keep_evenly=0))
  c.init_from = ""  # workdir of another run whose newest params initialise this one
  c.overwrite = False  # allow a workdir that holds a run of a different config
  c.reconstruction_indices = (1, 2, 3, 6, 7, 9)
  c.half_precision = False  # bf16 compute, f32 params
  return c
