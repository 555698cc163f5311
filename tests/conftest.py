"""Shared test settings: the TINY run overrides, and one thread per worker under pytest-xdist."""

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n N` (make test): N workers share the cores
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"  # before torch is imported; inherited by the processes tests start
    import torch

    torch.set_num_threads(1)

TINY = [
    "data.source=synthetic",
    "data.n_train=512",
    "data.n_test=128",
    "model.convnet_widths=[8,16]",
    "model.proj_hidden=32",
    "model.dim=32",
    "optim.batch_size=64",
    "optim.epochs=2",
    "eval.linear_epochs=2",
    "eval.knn_k=20",
    # the evaluation's expectation-gap and spectral probes: 32 images x 4 views (default 256 x 8,
    # which made each evaluation cost more than an epoch of training)
    "method.probe_images=32",
    "method.probe_views=4",
    "progress=false",
]


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides for a seconds-long CPU run under tmp_path."""
    return TINY + [f"out_dir={tmp_path / 'runs'}"]
