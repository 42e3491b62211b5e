"""Semi-supervised transfer: a classifier = an autoencoder's encoder + a small head,
trained on a few labels from scratch, or from a pretrained AE (frozen or fine-tuned).

    python -m ae_jax.main --config=configs/transfer.py --workdir=/tmp/clf \
        --config.pretrained_workdir=/tmp/ae --config.mode=finetune

The whole fit (every epoch, validation and best-epoch selection) is one jitted
call: batch size 8 means many tiny steps, and per-step dispatch would dominate.
"""
import functools
import json
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ae_jax import augment, checkpoint, data, errors, figures, models, report, run_config
from ae_jax.models.mlp import MLPStack

MODES = ("scratch", "frozen", "finetune")


class Classifier(nn.Module):
  """`ae.encode` (any registered autoencoder) → MLP head → logits."""

  ae: Any
  head: Sequence[int]
  num_classes: int
  freeze_encoder: bool = False

  @property
  def pixel_range(self):
    """The encoder's `PixelRange`: inputs are [0, 1] images mapped into it."""
    return self.ae.pixel_range

  @nn.compact
  def __call__(self, x_BHWC, *, train: bool = False):
    z = self.ae.encode(x_BHWC, train=train and not self.freeze_encoder)
    if self.freeze_encoder:
      z = jax.lax.stop_gradient(z)
    return MLPStack((*self.head, self.num_classes), final_act=False, name="head")(z, train=train)


def _stratified(labels, idx, k, rng):
  """`k` random indices of each class from `idx`, as a list per class."""
  out = []
  for c in np.unique(labels):
    members = rng.permutation(idx[labels[idx] == c])
    if len(members) < k:
      raise errors.UserError(f"class {c} has {len(members)} examples; need {k}")
    out.append(members[:k])
  return out


def labelled_split(labels, per_split, seed, pool=0, splits=("train", "val", "test")):
  """Seeded, stratified, disjoint index sets of `per_split` labelled examples each.

  pool = 0: drawn from the whole dataset; everything else is `unlabelled`.
  pool > 0: drawn from a fixed stratified pool of `pool` examples (the same for every
  seed); `unlabelled` is everything outside the pool, so one pretrained AE serves all
  seeds without ever seeing a labelled image.
  """
  labels = np.asarray(labels)
  n_classes = len(np.unique(labels))
  if per_split % n_classes or pool % n_classes:
    raise errors.UserError(f"labels_per_split={per_split} and labelled_pool={pool} must be "
                           f"multiples of the {n_classes} classes (stratified split)")
  everything = np.arange(len(labels))
  candidates = everything
  if pool:
    if pool < per_split * len(splits):
      raise errors.UserError(f"labelled_pool={pool} is smaller than {len(splits)}×{per_split}")
    candidates = np.sort(np.concatenate(
        _stratified(labels, everything, pool // n_classes, np.random.default_rng(0))))
  k = per_split // n_classes
  per_class = _stratified(labels, candidates, k * len(splits), np.random.default_rng(seed))
  out = {s: np.sort(np.concatenate([m[i * k:(i + 1) * k] for m in per_class]))
         for i, s in enumerate(splits)}
  used = candidates if pool else np.concatenate(list(out.values()))
  out["unlabelled"] = np.setdiff1d(everything, used)
  return out


def build(config, image_shape, num_classes):
  """The `Classifier` of `config`: its AE's encoder and head, over `num_classes`."""
  ae = models.build(config, image_shape)
  return Classifier(ae=ae, head=tuple(config.head), num_classes=num_classes,
                    freeze_encoder=config.mode == "frozen")


def load_pretrained(variables, source):
  """Copies the encoder subtree (params and batch stats) of an AE run into `variables`."""
  _, _, ae_vars, step = checkpoint.load_for_inference(source)
  out = dict(variables)
  for col in variables:
    mine = variables[col]["ae"]
    try:
      theirs = jax.tree_util.tree_map(lambda _, t: t, mine, _subtree(ae_vars.get(col, {}), mine))
    except (KeyError, ValueError) as e:
      raise errors.UserError(f"checkpoint in {source} does not fit this classifier's encoder "
                             f"({col}: {e})") from e
    shapes = lambda t: jax.tree_util.tree_map(lambda a: tuple(a.shape), t)
    if shapes(theirs) != shapes(mine):
      raise errors.UserError(f"checkpoint in {source} does not fit this classifier's encoder "
                             f"({col} shapes differ)")
    out[col] = {**variables[col], "ae": theirs}
  return out, step


def _subtree(tree, like):
  """The part of `tree` with the keys of `like` (KeyError if one is missing)."""
  if not isinstance(like, dict):
    return tree
  return {k: _subtree(tree[k], v) for k, v in like.items()}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _fit(model, config, variables, train_x, train_y, val_x, val_y, key):
  """All epochs in one call. Returns best-by-val variables and per-epoch curves."""
  b = config.batch_size
  n = train_x.shape[0]
  spe = n // b
  encoder = {"frozen": optax.set_to_zero(), "scratch": optax.adam(config.learning_rate),
             "finetune": optax.adam(config.learning_rate * config.encoder_lr_scale)}[config.mode]
  labels = {k: jax.tree_util.tree_map(lambda _: k, v) for k, v in variables["params"].items()}
  tx = optax.multi_transform({"head": optax.adam(config.learning_rate), "ae": encoder}, labels)

  def loss_fn(params, bs, x, y, rng, train):
    v = {"params": params, **({"batch_stats": bs} if bs else {})}
    x = model.pixel_range.to_model(x)
    if train:
      logits, new = model.apply(v, x, train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
    else:
      logits, new = model.apply(v, x, train=False), {}
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, (new.get("batch_stats", bs), (jnp.argmax(logits, -1) == y).mean())

  def step(carry, i):
    params, bs, opt, perm, ekey = carry
    idx = jax.lax.dynamic_slice(perm, (i * b,), (b,))
    x, y = train_x[idx], train_y[idx]
    k_aug, k_drop = jax.random.split(jax.random.fold_in(ekey, i))
    if config.augment:
      x = augment.random_affine(k_aug, x, max_degrees=config.aug_degrees, max_shift=config.aug_shift)
    (loss, (bs, _)), g = jax.value_and_grad(loss_fn, has_aux=True)(params, bs, x, y, k_drop, True)
    updates, opt = tx.update(g, opt, params)
    return (optax.apply_updates(params, updates), bs, opt, perm, ekey), loss

  def epoch(carry, e):
    params, bs, opt, best = carry
    ekey = jax.random.fold_in(key, e)
    perm = jax.random.permutation(ekey, n)
    (params, bs, opt, _, _), losses = jax.lax.scan(step, (params, bs, opt, perm, ekey),
                                                   jnp.arange(spe))
    val_loss, (_, val_acc) = loss_fn(params, bs, val_x, val_y, ekey, False)
    better = val_acc > best[2]
    best = jax.tree_util.tree_map(lambda new, old: jnp.where(better, new, old),
                                  (params, bs, val_acc, e), best)
    return (params, bs, opt, best), (losses.mean(), val_loss, val_acc)

  params, bs = variables["params"], variables.get("batch_stats", {})
  best0 = (params, bs, jnp.array(-1.0), jnp.array(-1))
  (_, _, _, best), curves = jax.lax.scan(epoch, (params, bs, tx.init(params), best0),
                                         jnp.arange(config.num_epochs))
  best_vars = {"params": best[0], **({"batch_stats": best[1]} if best[1] else {})}
  return best_vars, best[3], curves


@functools.partial(jax.jit, static_argnums=0)
def accuracy(model, variables, x01, y):
  """Fraction of [0,1] images x01 classified as their labels y."""
  logits = model.apply(variables, model.pixel_range.to_model(x01), train=False)
  return (jnp.argmax(logits, -1) == y).mean()


def pseudo_labels(model, variables, pool_x, per_class, num_classes):
  """The `per_class` most confident predictions of each class on unlabelled images."""
  logits = jax.jit(lambda v, x: model.apply(v, model.pixel_range.to_model(x), train=False))(
      variables, pool_x)
  prob = np.asarray(jax.nn.softmax(logits))
  pred, conf = prob.argmax(-1), prob.max(-1)
  keep = np.concatenate([np.flatnonzero(pred == c)[np.argsort(-conf[pred == c])][:per_class]
                         for c in range(num_classes)])
  return pool_x[keep], jnp.asarray(pred[keep], jnp.int32)


def _trace_config(config, num_epochs):
  """The hashable part of the config the fit is traced with: seeds and paths do not
  change the program, so runs over seeds share one compilation."""
  c = config.copy_and_resolve_references()
  c.seed, c.pretrained_workdir, c.init_from, c.num_epochs = 0, "", "", num_epochs
  return ml_collections.FrozenConfigDict(c)


def validate(config):
  """Raises `UserError` for a transfer config no run can take."""
  if config.mode not in MODES:
    raise errors.UserError(f"config.mode must be one of {MODES}, got {config.mode!r}")
  if config.mode != "scratch" and not config.pretrained_workdir:
    raise errors.UserError(f"mode {config.mode!r} needs --config.pretrained_workdir=AE_WORKDIR")
  if config.batch_size < 1 or config.num_epochs < 1:
    raise errors.UserError("batch_size and num_epochs must be positive")


def train_and_evaluate(config, workdir):
  """Fits the classifier; writes metrics.jsonl, config.json, a checkpoint and plots."""
  validate(config)
  ds = data.load(config.dataset, config.data_dir)
  if ds.labels is None:
    raise errors.UserError(f"dataset {ds.name} has no labels; transfer needs them")
  split = labelled_split(ds.labels, config.labels_per_split, config.seed, config.labelled_pool)
  if len(split["train"]) < config.batch_size:
    raise errors.UserError(f"batch_size {config.batch_size} exceeds {len(split['train'])} labels")
  model = build(config, ds.image_shape, ds.num_classes)
  key = jax.random.PRNGKey(config.seed)
  variables = jax.jit(lambda k: model.init({"params": k, "dropout": k},
                                           jnp.zeros((1, *ds.image_shape)), train=False))(key)
  source = ""
  if config.mode != "scratch":
    variables, step = load_pretrained(variables, config.pretrained_workdir)
    source = f" from {config.pretrained_workdir} (step {step})"
  n_params = models.count_params(variables["params"])
  size = models.size_mb(variables["params"])
  print(f"classifier ({config.model} encoder + head {tuple(config.head)}): {n_params:,} parameters "
        f"({size:.2f} MB, {'<' if size < 20 else '>='} 20 MB); mode {config.mode}{source}; "
        f"{len(split['train'])}/{len(split['val'])}/{len(split['test'])} labelled", flush=True)
  mngr = checkpoint.manager(workdir, keep=1)
  if checkpoint.steps(mngr):
    print(f"run in {workdir} already finished; see metrics.jsonl", flush=True)
    with open(os.path.join(workdir, "result.json")) as f:
      return json.load(f)
  take = lambda s: (jnp.asarray(ds.images[split[s]]), jnp.asarray(ds.labels[split[s]]))
  (tx_, ty_), (vx, vy), (sx, sy) = take("train"), take("val"), take("test")
  writer = report.MetricsWriter(workdir, resume_step=-1)
  fit_x, fit_y, pool = tx_, ty_, jnp.asarray(ds.images[split["unlabelled"]])
  step, best = 0, None  # metrics step = epochs so far, over all rounds
  for r in range(config.self_train.rounds + 1):
    if best is not None:  # self-training: add the most confident predictions on unlabelled images
      px, py = pseudo_labels(model, best, pool, config.self_train.per_class * r,
                             ds.num_classes)
      fit_x, fit_y = jnp.concatenate([tx_, px]), jnp.concatenate([ty_, py])
    # Later rounds have more labels: fewer epochs keep the number of steps per round.
    epochs = max(5, round(config.num_epochs * len(ty_) / len(fit_y)))
    best, best_epoch, (train_loss, val_loss, val_acc) = _fit(
        model, _trace_config(config, num_epochs=epochs), variables, fit_x, fit_y, vx, vy,
        jax.random.fold_in(key, 1 + r))
    for e in range(epochs):
      step += 1
      writer.write(step, {"train_loss": train_loss[e], "eval_loss": val_loss[e], "val_acc": val_acc[e]})
    print(f"  round {r}: {len(fit_y)} training labels, best val acc {float(val_acc[best_epoch]):.3f}",
          flush=True)
  writer.close()
  test_acc = float(accuracy(model, best, sx, sy))
  result = dict(val_acc=float(val_acc[best_epoch]), test_acc=test_acc, best_epoch=int(best_epoch) + 1,
                num_params=n_params, size_mb=size, mode=config.mode,
                self_train_rounds=config.self_train.rounds)
  run_config.write(workdir, config, dict(
      image_shape=list(ds.image_shape), num_params=n_params, class_names=ds.class_names,
      num_train=len(split["train"]), num_val=len(split["val"]), num_test=len(split["test"])))
  with open(os.path.join(workdir, "result.json.tmp"), "w") as f:
    json.dump(result, f, indent=2)
  os.replace(os.path.join(workdir, "result.json.tmp"), os.path.join(workdir, "result.json"))
  state = {"params": best["params"], "batch_stats": best.get("batch_stats", {})}
  checkpoint.save(mngr, state, result, step=step)
  figures.loss_curve(report.read_metrics(workdir), os.path.join(workdir, "plots", "loss_curve.png"))
  print(f"best epoch {result['best_epoch']}: val acc {result['val_acc']:.3f}, "
        f"test acc {test_acc:.3f}", flush=True)
  return result
