"""Run a config's sweep: one training run per point under ROOT, then a summary table.

A config file declares its sweep beside `get_config()`:

    def get_sweep():
      return {"rotation_weight": [0.0, 1.0, 10.0]}          # a grid: every combination
      # or explicit points: [{"arch.latent_dim": 8}, {"arch.latent_dim": 32, "seed": 1}]

Each point is the config with the point's values (and any `--config.KEY=VALUE` given
here) applied; it trains in ROOT/<point-name>, e.g. ROOT/rotation_weight=10.0, exactly as
`python -m ae_jax.main` would (rerunning resumes; finished points are not retrained).

    python -m ae_jax.sweep --config=configs/rotation.py --workdir=runs/beta
    python -m ae_jax.sweep --config=configs/rotation.py --workdir=runs/beta --print_only
    python -m ae_jax.sweep --config=configs/rotation.py --workdir=runs/beta --summary_only

    python -m ae_jax.sweep --config=configs/rotation.py --workdir=runs/beta --launcher=local --max_parallel=2
    python -m ae_jax.sweep --config=configs/rotation.py --workdir=runs/beta --launcher=slurm \
        --partition=gpu --nodes=2 --gpus_per_node=8 --time_min=120

`--launcher`: `inline` (default) trains the points one after another in this process;
`local` runs each as its own `ae_jax.main` process through submitit's local executor,
`--max_parallel` at once; `slurm` submits them as one Slurm job array through submitit
(a point on several nodes runs `--multihost`). Job logs: ROOT/jobs/. A point that fails
does not stop the others; the summary is rewritten as each point ends, its `status` column
`done`, `step S/T` or `failed: …`, and the command exits 1 if any point failed.
`--print_only` prints one `python -m ae_jax.main ...` command per point and writes
nothing; `--summary_only` rewrites ROOT/summary.csv and ROOT/summary.md from the points'
metrics.jsonl without training.
"""
import csv
import importlib.util
import itertools
import json
import os
import shlex
import sys

from absl import flags
from ml_collections import config_flags

from ae_jax import cli, errors, report

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags (defined when run as a program, not on import)."""
  flags.DEFINE_string("workdir", None, "Sweep root: one subdirectory per point, summary.csv/md here.")
  flags.DEFINE_bool("print_only", False, "Print one training command per point; run nothing.")
  flags.DEFINE_bool("summary_only", False, "Only rewrite the summary from the points' metrics.")
  flags.DEFINE_multi_string("point", [], "Run only these point names (repeatable).")
  flags.DEFINE_enum("launcher", "inline", ["inline", "local", "slurm"],
                    "inline: in this process; local: parallel processes; slurm: a job array.")
  flags.DEFINE_integer("max_parallel", 1, "Points running at once (local, slurm).", lower_bound=1)
  flags.DEFINE_string("partition", None, "Slurm partition.")
  flags.DEFINE_integer("nodes", 1, "Slurm nodes per point (more than 1: --multihost).", lower_bound=1)
  flags.DEFINE_integer("gpus_per_node", 0, "Slurm GPUs per node.", lower_bound=0)
  flags.DEFINE_integer("time_min", 60, "Time limit per point, minutes (local, slurm).", lower_bound=1)
  config_flags.DEFINE_config_file("config", None, "Training config file with a get_sweep().",
                                  lock_config=True)
  flags.mark_flags_as_required(["config", "workdir"])


def load_sweep(config_path):
  """The `get_sweep()` of a config file, as a list of {dotted key: value} dicts."""
  spec = importlib.util.spec_from_file_location("_sweep_config", config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise errors.UserError(f"{config_path} defines no get_sweep(); see ae_jax/sweep.py")
  return expand(module.get_sweep(), config_path)


def expand(sweep, where="get_sweep()"):
  """A grid {key: [values]} or a list of {key: value} points → list of point dicts."""
  if isinstance(sweep, dict):
    if not sweep or any(not isinstance(v, (list, tuple)) or not v for v in sweep.values()):
      raise errors.UserError(f"{where}: a grid sweep maps each key to a non-empty list of values")
    keys = list(sweep)
    points = [dict(zip(keys, combo)) for combo in itertools.product(*sweep.values())]
  elif isinstance(sweep, (list, tuple)) and sweep and all(isinstance(p, dict) and p for p in sweep):
    points = [dict(p) for p in sweep]
  else:
    raise errors.UserError(f"{where}: get_sweep() must return a dict of lists or a non-empty "
                           f"list of non-empty dicts, got {type(sweep).__name__}")
  names = [point_name(p) for p in points]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise errors.UserError(f"{where}: repeated sweep points: {', '.join(dupes)}")
  return points


def _format(value):
  return f"({', '.join(_format(v) for v in value)})" if isinstance(value, (tuple, list)) else str(value)


def point_name(point):
  """The point's directory name, e.g. 'rotation_weight=10.0' or 'arch.latent_dim=8,seed=1'."""
  name = ",".join(f"{k}={_format(v)}" for k, v in point.items())
  return name.replace("/", "_").replace(" ", "")


def apply_point(base, point):
  """A copy of `base` with the point's values; unknown keys and wrong types are user errors."""
  config = base.copy_and_resolve_references()
  for key, value in point.items():
    node, *path = config, *key.split(".")
    try:
      for part in path[:-1]:
        node = node[part]
      if path[-1] not in node:
        raise KeyError(key)
      node[path[-1]] = tuple(value) if isinstance(value, list) else value
    except KeyError as e:
      raise errors.UserError(f"sweep key {key!r} is not a config field") from e
    except (TypeError, ValueError) as e:
      raise errors.UserError(f"sweep value {key}={value!r}: {e}") from e
  return config


def command(config_path, workdir, point, overrides, python="python", multihost=False):
  """The `ae_jax.main` argv that trains `point` in WORKDIR/<point-name>."""
  args = [python, "-m", "ae_jax.main", f"--config={config_path}",
          f"--workdir={os.path.join(workdir, point_name(point))}"]
  args += [f"--config.{k}={_format(v)}" for k, v in {**overrides, **point}.items()]
  return args + (["--multihost"] if multihost else [])


def _final(rows, key):
  last = [r for r in rows if key in r]
  return last[-1] if last else {}


def _total_steps(point_dir):
  with open(os.path.join(point_dir, "config.json")) as f:
    saved = json.load(f)
  derived = saved["derived"]
  return derived.get("total_steps", saved["num_epochs"] * derived["steps_per_epoch"])


def summarize(workdir, points, failed=None):
  """Writes summary.csv and summary.md (final train/eval metrics per point, `failed` {name:
  error} marked); returns the rows."""
  rows = []
  for point in points:
    name = point_name(point)
    metrics = report.read_metrics(os.path.join(workdir, name))
    train_line, eval_line = _final(metrics, "train_loss"), _final(metrics, "eval_loss")
    status = "missing"
    if metrics and os.path.isfile(os.path.join(workdir, name, "config.json")):
      total = _total_steps(os.path.join(workdir, name))
      status = "done" if metrics[-1]["step"] >= total else f"step {metrics[-1]['step']}/{total}"
    if (failed or {}).get(name) and status != "done":
      status = f"failed: {failed[name]}".replace("|", "/")
    rows.append({"point": name, **{k: _format(v) for k, v in point.items()}, "status": status,
                 "step": metrics[-1]["step"] if metrics else "",
                 "train_loss": train_line.get("train_loss", ""),
                 **{k: v for k, v in eval_line.items() if k != "step"}})
  columns = list(dict.fromkeys(k for r in rows for k in r))
  with open(os.path.join(workdir, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  cell = lambda v: f"{v:.5g}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  return lines


def run_inline(points, configs, root):
  """Trains the points one after another in this process; returns {name: error} of the failed
  (stops at a signal: rerunning resumes)."""
  from ae_jax import train  # pylint: disable=g-import-not-at-top  (imports JAX)
  failed = {}
  for i, (p, config) in enumerate(zip(points, configs)):
    name = point_name(p)
    print(f"=== sweep point {i + 1}/{len(points)}: {name}", flush=True)
    try:
      state = train.train_and_evaluate(config, os.path.join(root, name))
    except errors.UserError as e:  # a diverged or failed point does not end the sweep
      print(f"point {name} failed: {e}", flush=True)
      failed[name], state = str(e), None
    summarize(root, points, failed)
    if state is not None and int(state.step) < _total_steps(os.path.join(root, name)):
      print("sweep stopped (signal); rerun the same command to resume", flush=True)
      break
  return failed


def run_jobs(points, config_path, overrides, root):
  """Runs the points as submitit jobs (`--launcher=local|slurm`); returns {name: error}."""
  from ae_jax import launch  # pylint: disable=g-import-not-at-top  (imports submitit)
  ex = launch.executor(FLAGS.launcher, os.path.join(root, "jobs"), partition=FLAGS.partition,
                       nodes=FLAGS.nodes, gpus_per_node=FLAGS.gpus_per_node,
                       time_min=FLAGS.time_min, max_parallel=FLAGS.max_parallel)
  python = sys.executable if FLAGS.launcher == "local" else "python"
  commands = {point_name(p): command(config_path, root, p, overrides, python, FLAGS.nodes > 1)
              for p in points}

  def on_finish(name, failed):
    print(f"point {name}: " + (f"failed: {failed[name]}" if name in failed else "finished"),
          flush=True)
    summarize(root, points, failed)

  return launch.run(ex, commands, max_parallel=FLAGS.max_parallel, on_finish=on_finish)


def main(argv):
  """Trains (or prints the commands for) every sweep point, then writes the summary."""
  del argv
  config_path = config_flags.get_config_filename(FLAGS["config"])
  overrides = config_flags.get_override_values(FLAGS["config"])
  points = load_sweep(config_path)
  configs = [apply_point(FLAGS.config, p) for p in points]
  if FLAGS.point:
    unknown = sorted(set(FLAGS.point) - {point_name(p) for p in points})
    if unknown:
      raise errors.UserError(f"unknown --point {', '.join(unknown)}; the points are: "
                             f"{', '.join(point_name(p) for p in points)}")
  from ae_jax import train  # pylint: disable=g-import-not-at-top  (imports JAX)
  for config in configs:
    train.validate(config)
  if FLAGS.print_only:
    for p in points:
      print(" ".join(shlex.quote(a) for a in command(config_path, FLAGS.workdir, p, overrides)))
    return
  os.makedirs(FLAGS.workdir, exist_ok=True)
  with open(os.path.join(FLAGS.workdir, "sweep.json"), "w") as f:
    json.dump({"config": config_path, "overrides": overrides,
               "points": {point_name(p): p for p in points}}, f, indent=2, default=list)
  chosen = [(p, c) for p, c in zip(points, configs) if not FLAGS.point or point_name(p) in FLAGS.point]
  failed = {}
  if not FLAGS.summary_only and FLAGS.launcher == "inline":
    failed = run_inline([p for p, _ in chosen], [c for _, c in chosen], FLAGS.workdir)
  elif not FLAGS.summary_only:
    failed = run_jobs([p for p, _ in chosen], config_path, overrides, FLAGS.workdir)
  lines = summarize(FLAGS.workdir, points, failed)
  print(f"\nsummary of {len(points)} points in {FLAGS.workdir}/summary.csv:\n" + "\n".join(lines))
  if failed:
    errors.fail(f"{len(failed)} of {len(chosen)} sweep points failed: {', '.join(failed)}", 1)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
