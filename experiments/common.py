"""Helpers shared by the report scripts: configs with overrides, training, result files.

    from experiments import common
    config = configs.load("mlp", num_epochs=50)
    state = common.train(config, "runs/report004/mlp")
    common.write_results("runs/report004", markdown_text, {"key": 1})
"""
import json
import os


def train(config_, workdir):
  from ae_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  return train_lib.train_and_evaluate(config_, workdir)


def metrics(workdir):
  from ae_jax import report  # pylint: disable=g-import-not-at-top
  return report.read_metrics(workdir)


def last(workdir, key):
  return [m[key] for m in metrics(workdir) if key in m][-1]


def write_results(out, markdown, payload):
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(markdown)
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(payload, f, indent=2, default=float)
  print(markdown, flush=True)
