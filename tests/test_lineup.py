"""dcign_eval/lineup.py: the lineup (is a reconstruction nearest its own identity?) and the blind
test that puts the same question to a person (scripts/blind_lineup.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dcign_eval import reconstruction as rc
from trainer.errors import DcignError


def test_lineup_identifies_true_renders_and_not_strangers():
    from dcign_eval.lineup import lineup, lineup_table, plot_lineup
    from trainer.faces import render_faces

    faces = rc.held_out_faces(5, 2)
    n = len(faces)
    truth = render_faces(faces["identity"], faces["azimuth"], faces["elevation"],
                         faces["light"]).astype(np.float32) / 255
    # "stranger": each face drawn as the next face's identity, at its own pose and light
    stranger = render_faces(np.roll(faces["identity"], -1), faces["azimuth"], faces["elevation"],
                            faces["light"]).astype(np.float32) / 255
    rec = rc.Reconstructions(faces, truth, {"exact": truth.copy(), "stranger": stranger,
                                            "exact again": truth.copy()})
    result = lineup(rec)
    assert result.candidates.shape == (n, n, 64, 64)
    np.testing.assert_array_equal(result.ranks("exact"), np.zeros(n))
    assert (result.ranks("stranger") >= 1).all()
    table = lineup_table(result, resamples=200, random_state=3).set_index("model")
    assert table.loc["exact", "identified"] == 1.0 and table.loc["stranger", "identified"] == 0.0
    assert table.loc["exact", "mse_to_own_face"] == 0.0 and table["chance"].eq(1 / n).all()
    assert (result.nearest_other() > 0).all()
    assert table["nearest_other"].eq(np.median(result.nearest_other())).all()
    # every figure inside its interval over the faces
    for figure in ("identified", "in_top_5", "mean_rank", "mse_to_own_face", "nearest_other"):
        assert ((table[f"{figure}_low"] <= table[figure])
                & (table[figure] <= table[f"{figure}_high"])).all(), figure
    assert table.loc["stranger", "mean_rank_high"] > table.loc["stranger", "mean_rank_low"]
    # paired with the first model: the stranger is identified less, the same model is not
    assert table.loc["stranger", "identified_difference_high"] == -1.0
    assert table.loc["stranger", "mean_rank_difference_low"] > 0
    assert (table.loc["exact again", ["identified_difference_low", "mean_rank_difference_low",
                                      "mean_rank_difference_high"]] == 0).all()
    assert table.loc[["exact"], "identified_difference"].isna().all()
    pd.testing.assert_frame_equal(lineup_table(result, 200, 3).set_index("model"), table)
    assert lineup_table(result, resamples=0)["identified_low"].isna().all()
    assert len(plot_lineup(result, faces=2, nearest=3).axes) == 2 * 3 * 4  # faces x models
    twice = rc.Reconstructions(pd.concat([faces, faces[:1]]), truth, {})
    with pytest.raises(DcignError, match="distinct identities"):
        lineup(twice)


def test_blind_test_hides_the_true_face_among_random_others():
    from dcign_eval.lineup import Lineup, blind_test, plot_blind_test, score_blind_test

    n, rng = 6, np.random.default_rng(0)
    candidates = rng.random((n, n, 4, 4), dtype=np.float32)
    result = Lineup(pd.DataFrame({"identity": np.arange(n)}), candidates, {}, {})
    test = blind_test(result, probes=np.zeros((n, 4, 4)), rows=4, choices=3, seed=1)
    assert len(set(test.faces)) == 4 and test.choices.shape == (4, 3, 4, 4)
    for row, (i, answer) in enumerate(zip(test.faces, test.answers)):
        np.testing.assert_array_equal(test.choices[row, answer - 1], candidates[i, i])
        others = [c for c in range(3) if c != answer - 1]
        assert not any(np.array_equal(test.choices[row, c], candidates[i, i]) for c in others)
    assert blind_test(result, np.zeros((n, 4, 4)), 4, 3, seed=1).answers == test.answers
    assert len(plot_blind_test(test, first=2, rows=6).axes) == 2 * 4
    all_right = score_blind_test(test.answers, test.answers, 3)
    assert all_right["right"] == 4 and all_right["chance"] == 4 / 3 and all_right["p"] < 0.05
    with pytest.raises(DcignError, match="answers must be"):
        score_blind_test(test.answers, [0, 1, 2, 3], 3)
    with pytest.raises(DcignError, match="rows"):
        blind_test(result, np.zeros((n, 4, 4)), rows=7)
