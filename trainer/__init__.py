"""DC-IGN trainer: the face world (``trainer.faces``), the model, monovariant training, checkpoints.

Layering (imports point down only): ``trainer.faces`` -> ``trainer`` (model, loop) -> ``dcign_eval``.
"""

from trainer.errors import DcignError

__all__ = ["DcignError"]
