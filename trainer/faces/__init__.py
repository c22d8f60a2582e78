"""The face world: a 3D morphable head (MakeHuman, CC0) rendered offline with exact factors.

``render_faces(identity, azimuth, elevation, light, size=64)`` renders images; ``render_grid`` and
``render_monovariant`` write data sets to disk; ``FaceWorld`` is the ground-truth data interface.
"""

from trainer.faces.datasets import (BATCH_TYPES, FACTOR_NAMES, FaceDataset, load_dataset,
                                    write_dataset)
from trainer.faces.render import FACTOR_RANGES, render_faces
from trainer.faces.world import (BATCH_SIZE, TEST_IDENTITY_OFFSET, VARIED, FaceWorld, GridSpec,
                                 MonovariantSpec, load_monovariant, preview_sheet, render_grid,
                                 render_monovariant, split_identities)

__all__ = ["BATCH_SIZE", "BATCH_TYPES", "FACTOR_NAMES", "FACTOR_RANGES", "TEST_IDENTITY_OFFSET",
           "VARIED", "FaceDataset", "FaceWorld", "GridSpec", "MonovariantSpec", "load_dataset",
           "load_monovariant", "preview_sheet", "render_faces", "render_grid",
           "render_monovariant", "split_identities", "write_dataset"]
