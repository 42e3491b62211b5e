"""Shared command-line plumbing: flag parsing that fails with one `error:` line.

    from ae_jax import cli
    cli.run(main)        # instead of absl.app.run(main)

A config file that is missing or raises, an unknown `--config.KEY`, or a value of
the wrong type ends the program with `error: …` on stderr and exit code 2.
"""
import sys

from absl import app, flags, logging

from ae_jax import errors


def _last_line(e):
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  return lines[-1] if lines else type(e).__name__


def _check_configs_loaded():
  """ml_collections defers a config file's load error until first use: raise it now."""
  for name in flags.FLAGS:
    value = flags.FLAGS[name].value
    if type(value).__name__ == "_ErrorConfig":
      try:
        value.lock()
      except OSError as e:
        errors.fail(f"cannot load --{name}: {_last_line(e.__cause__ or e)}")


def _override_with(key, argv):
  key = key.strip("'\"")
  hits = [a.split("=")[0] for a in argv if a.startswith("--") and a.split("=")[0].endswith(f".{key}")]
  return hits[0] if hits else key


def _parse_flags(argv):
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e).strip()
    if "Error whilst parsing config file" in message:  # get_config raised TypeError/ValueError
      errors.fail(f"cannot load config: {_last_line(message)}")
    errors.fail(message.splitlines()[0])
  except errors.UserError as e:
    errors.fail(str(e), e.exit_code)
  except (KeyError, AttributeError) as e:  # an override of a key the config lacks
    errors.fail(f"unknown config key: {_override_with(_last_line(e), argv[1:])}")
  except Exception as e:  # pylint: disable=broad-except  (get_config raised: a broken config file)
    errors.fail(f"cannot load config: {type(e).__name__}: {_last_line(e)}")
  _check_configs_loaded()
  return rest


def _quiet(main):
  def wrapped(argv):
    logging.set_verbosity(logging.WARNING)  # orbax/TFDS info lines drown the progress output
    return main(argv)
  return wrapped


def run(main):
  """absl `app.run` with friendly flag errors and `UserError` → `error:` line, exit 2."""
  app.run(_quiet(errors.cli_main(main)), flags_parser=_parse_flags, argv=sys.argv)
