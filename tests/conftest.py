import pytest

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
    "progress=false",
]


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides for a seconds-long CPU run under tmp_path."""
    return TINY + [f"out_dir={tmp_path / 'runs'}"]
