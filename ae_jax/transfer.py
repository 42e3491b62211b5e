"""Semi-supervised transfer: a classifier = an autoencoder's encoder + a small head,
trained on a few labels from scratch, or from a pretrained AE (frozen or fine-tuned).

It trains through the one training loop (`train.train_and_evaluate`, `config.task =
"classify"`): the same TrainState, optimizer builder, checkpoints and workdir files as
the autoencoders. This module holds what is particular to it: the model, the stratified
label splits, the pretrained encoder, the best-by-validation checkpoint (`BestKeeper`,
WORKDIR/best), self-training rounds (WORKDIR/round1, …) and `result.json`.

    python -m ae_jax.main --config=configs/transfer.py --workdir=/tmp/clf \
        --config.pretrained_workdir=/tmp/ae --config.mode=finetune
"""
import functools
import json
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ae_jax import checkpoint, data, distributed, errors, models
from ae_jax.models.mlp import MLPStack

MODES = ("scratch", "frozen", "finetune")
BEST = "best"  # WORKDIR/best: the checkpoint with the best validation accuracy
RESULT = "result.json"  # WORKDIR/result.json: the final val/test accuracy and size


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
  for col in [c for c in variables if variables[c]]:
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


@functools.partial(jax.jit, static_argnums=0)
def accuracy(model, variables, x01, y):
  """Fraction of [0,1] images x01 classified as their labels y."""
  logits = model.apply(variables, model.pixel_range.to_model(data.as_unit(x01)), train=False)
  return (jnp.argmax(logits, -1) == y).mean()


def pseudo_labels(model, variables, pool_x, per_class, num_classes):
  """The `per_class` most confident predictions of each class on unlabelled images."""
  logits = jax.jit(lambda v, x: model.apply(v, model.pixel_range.to_model(data.as_unit(x)),
                                            train=False))(
      variables, pool_x)
  prob = np.asarray(jax.nn.softmax(logits))
  pred, conf = prob.argmax(-1), prob.max(-1)
  keep = np.concatenate([np.flatnonzero(pred == c)[np.argsort(-conf[pred == c])][:per_class]
                         for c in range(num_classes)])
  return pool_x[keep], jnp.asarray(pred[keep], jnp.int32)


def validate(config):
  """Raises `UserError` for a transfer config no run can take."""
  if config.mode not in MODES:
    raise errors.UserError(f"config.mode must be one of {MODES}, got {config.mode!r}")
  if config.mode != "scratch" and not config.pretrained_workdir:
    raise errors.UserError(f"mode {config.mode!r} needs --config.pretrained_workdir=AE_WORKDIR")
  if config.batch_size < 1 or config.num_epochs < 1:
    raise errors.UserError("batch_size and num_epochs must be positive")


def splits(config, ds):
  """{'train', 'val', 'test', 'unlabelled'} Datasets: the stratified labelled splits."""
  if ds.labels is None:
    raise errors.UserError(f"dataset {ds.name} has no labels; a classifier needs them")
  split = labelled_split(ds.labels, config.labels_per_split, config.seed, config.labelled_pool)
  if len(split["train"]) < config.batch_size:
    raise errors.UserError(f"batch_size {config.batch_size} exceeds {len(split['train'])} labels")
  return {k: ds.take(v) for k, v in split.items()}


def round_dir(workdir, r):
  """Where self-training round r trains (round 0: the workdir itself)."""
  return workdir if r == 0 else os.path.join(workdir, f"round{r}")


def round_config(config, num_fit):
  """A self-training round's config: with `num_fit` labels, fewer epochs keep the steps per round."""
  c = config.copy_and_resolve_references()
  c.num_epochs = max(5, round(config.num_epochs * config.labels_per_split / num_fit))
  return c


def with_pseudo_labels(config, parts, prev_workdir, r):
  """Round r's training set: the labels plus the `per_class`·r most confident predictions of
  round r−1's best classifier per class on the unlabelled images."""
  model, variables, _ = best_variables(prev_workdir)
  x, y = pseudo_labels(model, variables, parts["unlabelled"].images, config.self_train.per_class * r,
                       parts["train"].num_classes)
  train = parts["train"]
  return data.Dataset(np.concatenate([train.images, np.asarray(x)]),
                      np.concatenate([train.labels, np.asarray(y)]), train.name, train.class_names)


class BestKeeper:
  """Keeps the state with the best validation accuracy so far in WORKDIR/best (one checkpoint,
  saved when an eval beats it); a resumed run reads the score back from its meta."""

  def __init__(self, workdir):
    self.mngr = checkpoint.manager(os.path.join(workdir, BEST), keep=1)
    kept = checkpoint.steps(self.mngr)
    self.acc = checkpoint.read_meta(self.mngr, kept[-1])["val_acc"] if kept else -1.0

  def update(self, state, ev, epoch):
    """Saves `state` when its eval accuracy beats the best so far."""
    acc = float(ev["acc"])
    if acc > self.acc:
      self.acc = acc
      checkpoint.save(self.mngr, state, {"val_acc": acc, "epoch": int(epoch)})


def best_variables(workdir):
  """(model, variables, meta) of the best-by-validation checkpoint of a classifier run."""
  from ae_jax import train_state  # pylint: disable=g-import-not-at-top
  model, abstract = train_state.abstract_state(checkpoint.read_config(workdir))
  found = checkpoint.restore_newest(checkpoint.manager(os.path.join(workdir, BEST), create=False),
                                    abstract)
  if found is None:
    raise errors.UserError(f"no best checkpoint in {os.path.join(workdir, BEST)}")
  return model, train_state.variables(found.state), found.meta


def write_result(config, workdir, last_round_dir, test):
  """WORKDIR/result.json from the last round's best classifier: val/test accuracy and size."""
  model, variables, meta = best_variables(last_round_dir)
  size = models.size_mb(variables["params"])
  result = dict(val_acc=meta["val_acc"], test_acc=float(accuracy(model, variables, test.images,
                                                                 test.labels)),
                best_epoch=meta["epoch"], num_params=models.count_params(variables["params"]),
                size_mb=size, mode=config.mode, self_train_rounds=config.self_train.rounds)
  if distributed.is_primary():
    with open(os.path.join(workdir, RESULT + ".tmp"), "w") as f:
      json.dump(result, f, indent=2)
    os.replace(os.path.join(workdir, RESULT + ".tmp"), os.path.join(workdir, RESULT))
  print(f"best epoch {result['best_epoch']}: val acc {result['val_acc']:.3f}, "
        f"test acc {result['test_acc']:.3f} ({result['num_params']:,} parameters, "
        f"{size:.2f} MB)", flush=True)
  return result
