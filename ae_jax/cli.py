"""Shared command-line plumbing: flag parsing that fails with one `error:` line.

    from ae_jax import cli
    cli.run(main)        # instead of absl.app.run(main)
"""
import sys

from absl import app, flags, logging

from ae_jax import errors


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    errors.fail(str(e).strip().splitlines()[0])
  except errors.UserError as e:
    errors.fail(str(e), e.exit_code)
  except (FileNotFoundError, IsADirectoryError, SyntaxError, ImportError) as e:
    errors.fail(f"cannot load config: {e}")
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    errors.fail(f"bad config override: {str(e).strip().splitlines()[0]}")


def _quiet(main):
  def wrapped(argv):
    logging.set_verbosity(logging.WARNING)  # orbax/TFDS info lines drown the progress output
    return main(argv)
  return wrapped


def run(main):
  """absl `app.run` with friendly flag errors and `UserError` → `error:` line, exit 2."""
  app.run(_quiet(errors.cli_main(main)), flags_parser=_parse_flags, argv=sys.argv)
