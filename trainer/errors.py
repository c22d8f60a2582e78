"""The one exception type the project raises for bad input.

Every user-facing failure (bad argument, missing or corrupt data set, foreign checkpoint, unknown
neuron...) raises :class:`DcignError` or a subclass with a one-line message naming the problem; the
CLI prints ``error: <message>`` and exits with status 2. Anything else escaping is a bug.

:class:`ArgumentParser` and :func:`run_main` keep that promise for ``python -m trainer`` and the
scripts under scripts/.
"""

import argparse
import sys
from typing import Callable


class DcignError(Exception):
    """Bad input: the message is one line that names the problem."""


class DatasetError(DcignError):
    """A data set is missing, partial, corrupt or does not fit the request."""


class CheckpointError(DcignError):
    """A checkpoint or run directory is missing, corrupt or foreign."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose bad argument raises :class:`DcignError` (one line) instead of printing the
    usage and exiting itself, so every front end reports it the same way."""

    def error(self, message):
        raise DcignError(f"{message} (see {self.prog} --help)")


def run_main(main: Callable[[], object]) -> None:
    """Run a command-line entry point: bad input ends it with one ``error: ...`` line on stderr
    and exit status 2."""
    try:
        main()
    except DcignError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
