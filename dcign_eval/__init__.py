"""dcign-eval: analyses of DC-IGN models (traverse, metrics, recognition, report).

Builds on :mod:`trainer` (the face world and the model); nothing in ``trainer`` imports from here.
"""

__version__ = "0.1.0"

from dcign_eval.protocol import Model, load_model  # noqa: E402  (the one loader of any model)

__all__ = ["Model", "load_model", "__version__"]
