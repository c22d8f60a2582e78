"""The one exception type the project raises for bad input.

Every user-facing failure (bad argument, missing or corrupt data set, foreign checkpoint, unknown
neuron...) raises :class:`DcignError` or a subclass with a one-line message naming the problem; the
CLI prints ``error: <message>`` and exits non-zero. Anything else escaping is a bug.
"""


class DcignError(Exception):
    """Bad input: the message is one line that names the problem."""


class DatasetError(DcignError):
    """A data set is missing, partial, corrupt or does not fit the request."""


class CheckpointError(DcignError):
    """A checkpoint or run directory is missing, corrupt or foreign."""
