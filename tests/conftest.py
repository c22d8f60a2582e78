"""Shared test set-up: the cache of encoded codes lives in the session's temporary directory, so
no test reads or fills a user's ~/.cache/dcign-eval. A test may point it elsewhere (monkeypatch)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def session_code_cache(tmp_path_factory):
    before = os.environ.get("DCIGN_EVAL_CACHE")
    os.environ["DCIGN_EVAL_CACHE"] = str(tmp_path_factory.mktemp("dcign-eval-cache"))
    yield
    if before is None:
        os.environ.pop("DCIGN_EVAL_CACHE", None)
    else:
        os.environ["DCIGN_EVAL_CACHE"] = before
