"""The objective: pure per-example terms of (model, variables, batch, rng) → loss + metrics.

Models differ only in which terms are active: every model has the reconstruction
MSE; `noise_std > 0` makes it denoising; `pose_augment.max_degrees`/`max_shift > 0`
feed randomly rotated/shifted inputs and still score the clean image (the encoder learns to
ignore small pose changes, which makes embeddings cluster by class); `rotation_weight > 0`
adds β·CE of the rotation head on inputs turned by random multiples of 90° (reconstructed
turned with `rotation_recon="rotated"`, or upright with a second, encoder-only pass for the
head with `"upright"`); a VAE adds its KL. A classifier (`config.task="classify"`, the
encoder of an AE plus a head; ae_jax/transfer.py) has the cross-entropy of its labels.

    terms, new_vars = losses.per_example(model, variables, x01_BHWC, rng, config, train=True)
    loss = losses.total(terms, config)   # mean over the batch
    terms, new_vars = losses.terms(model, variables, (x01_BHWC, y_B), rng, clf_config, train=True)
"""
import jax
import jax.numpy as jnp
import optax

from ae_jax import augment


def rotate_batch(x_BHWC, k_B):
  """Rotates each square image by k·90° (k in 0..3), on device."""
  rots = jnp.stack([jnp.rot90(x_BHWC, r, axes=(1, 2)) for r in range(4)])
  return rots[k_B, jnp.arange(x_BHWC.shape[0])]


def _apply(model, variables, x, rng, train, method=None):
  mutable = ["batch_stats"] if train and "batch_stats" in variables else False
  rngs = dict(zip(("dropout", "latent"), jax.random.split(rng))) if train else {}
  kwargs = {"method": method} if method else {}
  res = model.apply(variables, x, train=train, rngs=rngs, mutable=mutable, **kwargs)
  return res if mutable else (res, {})


def per_example(model, variables, x01_BHWC, rng, config, *, train):
  """Returns ({term: (B,) array}, mutated collections). Targets are always clean images."""
  k_noise, k_rot, k_model = jax.random.split(rng, 3)
  pr = model.pixel_range
  x = pr.to_model(x01_BHWC)
  inputs = x
  aug = config.get("pose_augment")
  if train and aug is not None and (aug.max_degrees > 0 or aug.max_shift > 0):
    moved = augment.random_affine(jax.random.fold_in(rng, 3), x01_BHWC,
                                  max_degrees=aug.max_degrees, max_shift=aug.max_shift)
    inputs = pr.to_model(moved)
  b = x.shape[0]
  rotating = config.rotation_weight > 0
  # "rotated" (report 002): the AE reconstructs turned images, so its latent sees every
  # orientation; "upright": the AE sees upright images and the rotation head a second
  # encoder pass over turned copies.
  upright = config.get("rotation_recon", "rotated") == "upright"
  k_B = jax.random.randint(k_rot, (b,), 0, 4) if train else jnp.arange(b) % 4
  if rotating and train and not upright:
    x, inputs = rotate_batch(x, k_B), rotate_batch(inputs, k_B)
  if config.noise_std > 0:
    inputs = inputs + config.noise_std * jax.random.normal(k_noise, x.shape, x.dtype)
  out, new_vars = _apply(model, variables, inputs, k_model, train)
  axes = tuple(range(1, x.ndim))
  terms = {"mse": jnp.mean((out["recon"].astype(jnp.float32) - x) ** 2, axis=axes)}
  if "mean" in out:  # VAE: KL(q(z|x) || N(0, I)) per pixel, to sit on MSE's scale.
    kl = -0.5 * jnp.sum(1 + out["logvar"] - out["mean"] ** 2 - jnp.exp(out["logvar"]), axis=-1)
    terms["kl"] = kl / (x[0].size)
  if rotating:
    logits = out["logits"]
    if upright or not train:  # eval: the head on fixed rotations of the clean images
      turned = rotate_batch(inputs if train else x, k_B)
      logits, _ = _apply(model, {**variables, **new_vars}, turned, k_model, train,
                         method="rotation_logits")
    logits = logits.astype(jnp.float32)
    terms["ce"] = optax.softmax_cross_entropy_with_integer_labels(logits, k_B)
    terms["rot_acc"] = (jnp.argmax(logits, -1) == k_B).astype(jnp.float32)
  return terms, new_vars


def classify_terms(model, variables, batch, rng, config, *, train):
  """({'xent', 'acc'}: (B,) arrays, mutated collections) of a classifier on a batch
  (x01_BHWC, labels_B); `config.augment` rotates/shifts the training inputs at random."""
  x01_BHWC, y_B = batch
  if train and config.augment:
    x01_BHWC = augment.random_affine(jax.random.fold_in(rng, 3), x01_BHWC,
                                     max_degrees=config.aug_degrees, max_shift=config.aug_shift)
  logits, new_vars = _apply(model, variables, model.pixel_range.to_model(x01_BHWC), rng, train)
  logits = logits.astype(jnp.float32)
  return {"xent": optax.softmax_cross_entropy_with_integer_labels(logits, y_B),
          "acc": (jnp.argmax(logits, -1) == y_B).astype(jnp.float32)}, new_vars


def terms(model, variables, batch, rng, config, *, train):
  """The task's per-example terms: `classify_terms` on (images, labels) for
  `config.task == "classify"`, else the autoencoder's `per_example` on images."""
  fn = classify_terms if config.get("task", "autoencode") == "classify" else per_example
  return fn(model, variables, batch, rng, config, train=train)


def total(terms_mean, config):
  """Scalar loss from batch-mean terms."""
  if "xent" in terms_mean:
    return terms_mean["xent"]
  loss = terms_mean["mse"]
  if "kl" in terms_mean:
    loss = loss + config.kl_weight * terms_mean["kl"]
  if "ce" in terms_mean:
    loss = loss + config.rotation_weight * terms_mean["ce"]
  return loss
