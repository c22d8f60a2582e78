"""dcign_eval/reconstruction.py: the held-out faces every reconstruction measure uses."""

from __future__ import annotations

import pandas as pd
import pytest

from dcign_eval import reconstruction as rc
from trainer.errors import DcignError


def test_held_out_faces_are_seeded_and_never_training_identities():
    from trainer.faces import TEST_IDENTITY_OFFSET

    a, b = rc.held_out_faces(6, 1), rc.held_out_faces(6, 1)
    pd.testing.assert_frame_equal(a, b)
    assert (a["identity"] >= TEST_IDENTITY_OFFSET + rc.RECONSTRUCTION_FIRST_IDENTITY).all()
    assert a["identity"].is_unique
    with pytest.raises(DcignError):
        rc.held_out_faces(0)
