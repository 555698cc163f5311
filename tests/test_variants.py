"""The variants' registry and traits: what each variant reads, and the refusal of keys it ignores."""

import dataclasses

import pytest

from emsiam.config import ConfigError, MethodConfig, load_config, presets
from emsiam.variants import VARIANTS, Variant, check_config, predictor_kind, steps_per_outer
from emsiam.variants.base import BANK_KEYS, COMMON_KEYS

TRAITS = {  # name: (uses_k, default_predictor, bank_views)
    "simsiam": (False, "learned", 0),
    "kstep": (True, "learned", 2),
    "ema": (False, "none", 1),
    "momentum": (False, "learned", 0),
    "mean_input": (True, "learned", 2),
}


def _cfg(*over):
    return load_config(None, ["name=x", *over])


def test_registry_and_traits():
    assert list(VARIANTS) == list(TRAITS)
    for name, cls in VARIANTS.items():
        assert issubclass(cls, Variant)
        assert (cls.uses_k, cls.default_predictor, cls.bank_views) == TRAITS[name], name
        assert cls.uses_k == ("k" in cls.config_keys), name  # uses_k: reads method.k
        assert (cls.bank_views > 0) == (set(BANK_KEYS) <= set(cls.config_keys)), name
        assert cls.about and not set(cls.config_keys) & set(COMMON_KEYS), name


def test_every_method_key_is_read_by_someone():
    """A new method.* key must be declared: common, or in the config_keys of the variants that read it."""
    fields = {f.name for f in dataclasses.fields(MethodConfig)}
    declared = set(COMMON_KEYS).union(*(cls.config_keys for cls in VARIANTS.values()))
    assert declared == fields


def test_traits_drive_predictor_and_steps():
    assert predictor_kind(_cfg("method.variant=ema")) == "none"
    assert predictor_kind(_cfg("method.variant=ema", "method.predictor=learned")) == "learned"
    assert predictor_kind(_cfg("method.variant=momentum")) == "learned"
    assert steps_per_outer(_cfg(), 20) == 1
    assert steps_per_outer(_cfg("method.variant=kstep", "method.k=3"), 20) == 3
    assert steps_per_outer(_cfg("method.variant=mean_input", "method.k=epoch"), 20) == 20
    assert steps_per_outer(_cfg("method.variant=kstep", "method.k=2epochs"), 20) == 40


def test_simsiam_with_k_is_refused_naming_key_and_variant():
    with pytest.raises(ConfigError) as err:
        check_config(_cfg("method.variant=simsiam", "method.k=10"))
    assert str(err.value) == ("method.k=10 is not read by method.variant=simsiam (it takes one step per target; "
                              "use method.variant=kstep or mean_input, or leave method.k at 1)")


@pytest.mark.parametrize("over, words", [
    (["method.variant=kstep", "method.ema_m=0.5"],
     ["method.ema_m=0.5 is not read by method.variant=kstep", "use method.variant=ema"]),
    (["method.variant=ema", "method.k=epoch"], ["method.k=epoch is not read by method.variant=ema"]),
    (["method.variant=kstep", "method.stopgrad=false"],
     ["method.stopgrad=false is not read by method.variant=kstep", "use method.variant=simsiam"]),
    (["method.variant=ema", "method.pairs=2"], ["method.pairs=2 is not read by method.variant=ema"]),
    (["method.bank=disk"], ["method.bank=disk is not read by method.variant=simsiam",
                            "use method.variant=kstep or ema or mean_input"]),
    (["method.variant=momentum", "method.mean_input_views=3"], ["method.mean_input_views=3", "variant=momentum"]),
    (["method.variant=mean_input", "method.target_views=2"], ["method.target_views=2", "variant=mean_input"]),
    (["method.e_step_bn=eval"], ["method.e_step_bn=eval is not read by method.variant=simsiam"]),
    (["method.variant=kstep", "method.momentum_tau=0.5"], ["method.momentum_tau=0.5", "use method.variant=momentum"]),
])
def test_keys_a_variant_ignores_are_refused(over, words):
    cfg = _cfg(*over)  # load_config alone accepts it: the config does not know the variants
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize("over", [
    [], ["method.variant=kstep", "method.k=10", "method.views=fresh", "method.target_views=4", "method.bank=disk"],
    ["method.variant=ema", "method.ema_m=0.5", "method.ema_view=extra", "method.e_step_bn=eval"],
    ["method.variant=momentum", "method.momentum_tau=0.9"],
    ["method.variant=mean_input", "method.k=epoch", "method.mean_input_views=3"],
    ["method.stopgrad=false", "method.pairs=2", "method.symmetric=false", "method.loss=mse"],
    ["method.variant=simsiam", "method.k=1", "method.ema_m=0.8"],  # set, but at their defaults
])
def test_keys_where_they_are_read_are_accepted(over):
    check_config(_cfg(*over))


def test_presets_pass_for_every_variant():
    for preset in presets():
        for name in VARIANTS:
            check_config(load_config(preset, [f"method.variant={name}"]))


def test_unknown_variant_is_refused_with_suggestions():
    with pytest.raises(ConfigError, match=r"method.variant='ksteps' is not a variant. Did you mean kstep\?"):
        check_config(_cfg("method.variant=ksteps"))


def test_resume_checks_only_the_name():
    """A run saved with a key its variant ignores (older code accepted it) still resumes."""
    check_config(_cfg("method.k=10", "resume=true"))
    with pytest.raises(ConfigError):
        check_config(_cfg("method.variant=nope", "resume=true"))


def test_cli_refuses_with_exit_2(capsys):
    from emsiam.cli import main

    assert main(["config", "method.variant=kstep", "method.ema_m=0.5"]) == 2
    assert "method.ema_m=0.5 is not read by method.variant=kstep" in capsys.readouterr().err


def test_a_new_variant_is_one_class_and_one_registry_line(monkeypatch):
    """Registering a class is all the config, predictor and loop helpers need to know about it."""
    from emsiam.variants.kstep import KStep

    class Toy(KStep):
        default_predictor = "none"
        about = "is a toy"

    monkeypatch.setitem(VARIANTS, "toy", Toy)
    cfg = _cfg("method.variant=toy", "method.k=4")
    check_config(cfg)
    assert predictor_kind(cfg) == "none" and steps_per_outer(cfg, 20) == 4
    with pytest.raises(ConfigError, match=r"method.ema_m=0.5 is not read by method.variant=toy \(it is a toy;"):
        check_config(_cfg("method.variant=toy", "method.ema_m=0.5"))


# ---- the EMA update: an explicit call of the loop, as it was inside loss() ----------------------


def _old_ema_loss(self, idx, x, step):
    """EMA.loss before the update moved out of it (7e31151): η read, u computed, bank updated."""
    import torch
    import torch.nn.functional as F

    from emsiam.targets import target_mode

    m = self.cfg.method
    x1, x2 = self.views(x, idx, step)
    eta = self.bank.read(idx)[:, 0]
    if m.ema_view == "extra":
        with target_mode(self.model, m.e_step_bn):
            (x3,) = self.views(x, idx, step, first=2, n=1)
            u = self.encode(x3)
    p1, p2, z1, z2 = self.model(x1, x2)
    if m.ema_view == "other":
        u = F.normalize(z2.detach().float(), dim=1)
    elif m.ema_view == "mean":
        u = 0.5 * (F.normalize(z1.detach().float(), dim=1) + F.normalize(z2.detach().float(), dim=1))
    loss = self.pair_loss(p1.float(), p2.float(), eta, eta)
    self.bank.ema_update(idx, u.unsqueeze(1), m.ema_m, version=step)
    if self._updates_local is not None:
        self._updates_local.index_add_(0, idx, torch.ones_like(idx, dtype=torch.int32))
    return loss


@pytest.mark.parametrize("view, amp", [("mean", "none"), ("other", "none"), ("extra", "none"), ("mean", "bf16")])
def test_explicit_ema_update_equals_the_update_inside_the_loss(tmp_path, view, amp):
    """The update now runs after the step, outside its autocast: the same bank, losses and θ to the bit."""
    import types

    import torch

    from emsiam.alternation import m_step, outer_iterations
    from emsiam.setup import setup

    over = ["data.n_train=128", "data.n_test=32", "model.convnet_widths=[8]", "model.proj_hidden=16", "model.dim=16",
            "optim.batch_size=32", "optim.epochs=2", "progress=false", "method.variant=ema", "method.ema_m=0.5",
            f"method.ema_view={view}", f"amp={amp}", f"out_dir={tmp_path}"]
    new, old = setup(_cfg(*over, "name=new")), setup(_cfg(*over, "name=old"))
    old.model.load_state_dict(new.model.state_dict())
    old.variant.loss = types.MethodType(_old_ema_loss, old.variant)
    old.variant.update_targets = lambda idx, step: None
    for s in (new, old):
        s.variant.start(s.train.images, 32)
    for step, (idx,) in enumerate(outer_iterations(new.batches.indices(0), 32, 1) * 2):  # every row twice
        x = new.train.images.index_select(0, idx)
        losses = []
        for s in (new, old):
            losses.append(m_step(s, idx, x, step))
            s.variant.update_targets(idx, step)
        assert torch.equal(*losses), step
    rows = torch.arange(128)
    assert torch.equal(new.variant.bank.read(rows), old.variant.bank.read(rows))
    assert torch.equal(new.variant.bank.versions(rows), old.variant.bank.versions(rows))
    assert new.variant._updates_local.tolist() == old.variant._updates_local.tolist() == [2] * 128
    for key, v in new.model.state_dict().items():
        assert torch.equal(v, old.model.state_dict()[key]), key
