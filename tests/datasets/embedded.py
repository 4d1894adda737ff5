"""The module fixtures shared by the checks of the committed datasets (glyphs, icons): the manifest and the
arrays of the data file, each read once per test module. numpy and json only."""
import json

import numpy as np
import pytest


def manifest_and_data_fixtures(manifest_path, npz_path):
    """`manifest, data = manifest_and_data_fixtures(MANIFEST, NPZ)` at a test module's top level."""

    @pytest.fixture(scope="module")
    def manifest():
        with open(manifest_path, encoding="utf-8") as f:
            return json.load(f)

    @pytest.fixture(scope="module")
    def data():
        with np.load(npz_path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    return manifest, data
