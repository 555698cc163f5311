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


#: The test files that take longest (seconds of a quiet 2-core run, 2026-11-29), started first.
#: `make test` hands whole files to the workers in collection order (``--dist loadfile
#: --no-loadscope-reorder``); a long file handed out last would leave one worker running alone at
#: the end. Longest first brings the wall time close to the total divided by the workers. The
#: other files keep pytest's order after these.
LONGEST_FIRST = (
    "test_faults.py",  # 55 s: real processes killed and resumed
    "test_distributed.py",  # 51 s: two torchrun launches
    "test_sweep.py",  # 21 s: the sweep runner's subprocesses, the submitit launcher
    "test_instruments.py",  # 21 s
    "test_bank_recovery.py",  # 20 s
    "test_report.py",  # 20 s: reports of many runs, figures
    "test_generality.py",  # 18 s
    "test_gpu_check.py",  # 16 s: the GPU check's CPU dry run
    "test_alternation.py",  # 13 s
    "test_install.py",  # 10 s
)


def pytest_collection_modifyitems(items):
    """Put the files of :data:`LONGEST_FIRST` first, in that order (a stable sort: the tests of a
    file, and the other files, keep their order)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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
