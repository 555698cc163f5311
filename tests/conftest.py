"""Shared test settings: the TINY run overrides, one thread per worker under pytest-xdist, and
the synthetic data rendered once per test process."""

import dataclasses
import functools
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


def render_synthetic_once() -> pytest.MonkeyPatch:
    """Make ``emsiam.data.sources`` render each synthetic set once in this process; returns the
    patch (``.undo()`` restores). Hundreds of tests train on the same few synthetic sets, and
    rendering one took about a quarter of a TINY run. ``make_synthetic`` is a pure function of
    its arguments (``tests/test_data_synthetic.py`` checks it, unpatched); each caller gets its
    own copy of the tensors."""
    from emsiam.data import sources, synthetic

    render = functools.lru_cache(maxsize=16)(synthetic.make_synthetic)

    def cached(n, **kw):
        s = render(n, **kw)
        return dataclasses.replace(s, images=s.images.clone(), labels=s.labels.clone())

    mp = pytest.MonkeyPatch()
    mp.setattr(sources, "make_synthetic", cached)
    return mp


@pytest.fixture(autouse=True, scope="session")
def _render_synthetic_once():
    """For every test in this process (processes that tests start render their own, except
    tests/distributed_worker.py, which patches itself)."""
    mp = render_synthetic_once()
    yield
    mp.undo()
