import pytest

from emsiam.config import Config, ConfigError, diff, load_config, parse_overrides, presets, to_dict


def test_defaults_and_overrides():
    cfg = load_config(None, ["optim.epochs=3", "model.convnet_widths=[8,16]", "data.root=/tmp/x", "eval.knn_t=1"])
    assert cfg.optim.epochs == 3
    assert cfg.model.convnet_widths == [8, 16]
    assert cfg.data.root == "/tmp/x"
    assert cfg.eval.knn_t == 1.0 and isinstance(cfg.eval.knn_t, float)


def test_presets_load():
    assert {"cpu", "gpu-cifar", "demo"} <= set(presets())
    for p in presets():
        assert isinstance(load_config(p), Config)
    assert load_config("gpu-cifar").model.backbone == "resnet18_cifar"


def test_unknown_key_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.epoch'.*Did you mean epochs"):
        load_config(None, ["optim.epoch=3"])
    with pytest.raises(ConfigError, match="unknown config key 'optimizer'"):
        load_config(None, ["optimizer.lr=1"])


@pytest.mark.parametrize(
    "override,match",
    [
        ("optim.epochs=three", "optim.epochs: expected an integer"),
        ("optim.epochs=2.5", "optim.epochs: expected an integer"),
        ("model.backbone=vgg", "model.backbone: expected one of"),
        ("progress=1", "progress: expected true/false"),
        ("optim.batch_size=1", "batch_size must be >= 2"),
        ("model.proj_layers=4", "proj_layers must be 2 or 3"),
        ("optim", "not of the form key=value"),
        ("optim.momentum=1.5", r"optim.momentum must be in \[0, 1\)"),
        ("optim.momentum=-0.1", r"optim.momentum must be in \[0, 1\)"),
        ("optim.weight_decay=-1", "optim.weight_decay must be >= 0"),
        ("optim.lr_per_256=1e-3x", "optim.lr_per_256: expected a number"),
        ("optim.lr_per_256=nan", "expected a finite number"),
        ("eval.knn_t=inf", "expected a finite number"),
        ("name=..", "inside out_dir"),
        ("name=.", "inside out_dir"),
        ("name=/tmp/x", "inside out_dir"),
        ("name=a/b", "inside out_dir"),
        ("name=''", "inside out_dir"),
        ("device=tpu", "device='tpu' is not supported"),
    ],
)
def test_bad_values_rejected(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_missing_config_file_names_presets(tmp_path):
    with pytest.raises(ConfigError, match="presets: .*cpu"):
        load_config(str(tmp_path / "nope.yaml"))


def test_yaml_file_unknown_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  backbon: convnet\n")
    with pytest.raises(ConfigError, match="Did you mean backbone"):
        load_config(str(f))


def test_diff_ignores_resume_keys():
    a, b = to_dict(load_config()), to_dict(load_config(None, ["resume=true", "optim.epochs=7"]))
    assert diff(a, b) == ["optim.epochs: 10 -> 7"]


def test_override_none():
    assert parse_overrides(["data.n_train=null"]) == {"data": {"n_train": None}}


def test_float_syntax_accepted(tmp_path):
    """YAML 1.1 reads 1e-3 as a string; every float() syntax is accepted, ints too."""
    cfg = load_config(None, ["optim.lr_per_256=1e-3", "optim.weight_decay=5E-4", "eval.knn_t=1", "optim.momentum=.9"])
    assert (cfg.optim.lr_per_256, cfg.optim.weight_decay, cfg.eval.knn_t, cfg.optim.momentum) == (1e-3, 5e-4, 1.0, 0.9)
    assert all(isinstance(v, float) for v in (cfg.optim.lr_per_256, cfg.eval.knn_t))
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr_per_256: 1e-3\n  weight_decay: 1.0e-4\n")
    assert load_config(str(f)).optim.lr_per_256 == 1e-3
    for ok in ("name=my-run.v2", "device=cuda:1", "device=cpu"):
        load_config(None, [ok])


def test_malformed_yaml_and_directory_config(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  epochs: 3\n  lr: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML \(line \d+"):
        load_config(str(f))
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path))


def test_a_config_saved_by_older_code_still_resumes():
    """A config.yaml written before today's keys existed (the checked-in run config of an older
    version) equals the same settings loaded today: every key added since is in ADDED_KEYS."""
    from pathlib import Path

    import yaml

    from emsiam.config import flatten, from_dict

    old = yaml.safe_load((Path(__file__).parents[1] / "benchmarks/results/cifar10-cpu-simsiam.config.yaml").read_text())
    now = to_dict(from_dict(Config, old))
    assert set(flatten(now)) - set(flatten(old))  # keys were added since that version
    assert diff(old, now) == []


def test_safe_load_builds_what_pyyaml_safe_load_builds():
    """``safe_load`` (libyaml's parser when present) gives yaml.safe_load's values: every preset,
    a saved config, the scalar forms overrides use; and a YAMLError with its line on bad input."""
    import yaml

    from emsiam.config import PRESET_DIR, safe_load

    texts = [p.read_text() for p in sorted(PRESET_DIR.glob("*.yaml"))]
    texts.append(yaml.safe_dump(to_dict(load_config("cpu", ["method.variant=kstep", "method.k=epoch"]))))
    texts += ["1e-3", "1.0e-4", "0.1", "[8, 16]", "true", "null", "~", "epoch", "2epochs", "0x10", "1_000", "'7'",
              "{a: 1, b: [x, 2.5]}", ".inf", "-.inf", "2026-11-29"]
    for text in texts:
        assert safe_load(text) == yaml.safe_load(text), text
    assert type(safe_load("1e-3")) is type(yaml.safe_load("1e-3"))
    with pytest.raises(yaml.YAMLError) as e:
        safe_load("a: 1\nb: [unclosed\n")
    assert e.value.problem_mark.line >= 1
