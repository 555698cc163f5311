import importlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import figures, paper, report, results
from analysis.stats import COLLAPSE_CRITERION
from tests.test_figures import fake_records, write_run


def make_root(tmp_path):
    root = tmp_path / "runs"
    ks = root / "kstep_sweep"
    for seed in (0, 1):
        s = [f"seed={seed}"]
        write_run(ks, f"simsiam_s{seed}", s, fake_records(40 + seed, 0.9))
        write_run(ks, f"k1_s{seed}", s + ["method.variant=kstep", "method.k=1"],
                  fake_records(40 + seed, 0.9, kstep=True))
        # k10 - k1 = -1, -2: the interval covers 0
        write_run(ks, f"k10_s{seed}", s + ["method.variant=kstep", "method.k=10"], fake_records(39, 0.95, kstep=True))
        # k100 - k1 = +2, +2 and kepoch - k1 = +5, +5: resolved, one each way
        write_run(ks, f"k100_s{seed}", s + ["method.variant=kstep", "method.k=100"],
                  fake_records(42 + seed, 0.95, kstep=True))
        write_run(ks, f"kepoch_s{seed}", s + ["method.variant=kstep", "method.k=epoch"],
                  fake_records(45 + seed, 0.95, kstep=True))
    ema = root / "ema_vs_predictor"
    for seed in (0, 1):
        s = [f"seed={seed}"]
        write_run(ema, f"simsiam_s{seed}", s + ["method.predictor=learned"], fake_records(40 + seed, 0.9))
        write_run(ema, f"simsiam_no_predictor_s{seed}", s + ["method.predictor=none"], fake_records(20 + seed, 0.1))
        ema_run = s + ["method.variant=ema", "method.predictor=none"]
        # logs bank/init_weight (0.51 at the end), beats init, below SimSiam by 2 each seed
        write_run(ema, f"ema_m0.8_s{seed}", ema_run + ["method.ema_m=0.8"],
                  fake_records(38 + seed, 0.9, ema=True, init_weight=0.51))
        # no bank/init_weight column (older runs): derived 0.5^3 = 0.125
        write_run(ema, f"ema_m0.5_s{seed}", ema_run + ["method.ema_m=0.5"], fake_records(39, 0.9, ema=True))
        write_run(ema, f"ema_m0.0_s{seed}", ema_run + ["method.ema_m=0.0"], fake_records(39, 0.9, ema=True))
    write_run(root / "stopgrad", "stopgrad_s0", ["method.stopgrad=true"], fake_records(40, 0.9))
    write_run(root / "stopgrad", "no_stopgrad_s0", ["method.stopgrad=false"], fake_records(20, 0.1))
    write_run(root / "mystery", "thing_s0", ["method.variant=mean_input"], fake_records(35, 0.8))
    su = root / "su_dynamics"
    su.mkdir()
    t = np.linspace(0, 10, 50)
    for name in ("stopgrad", "no_stopgrad"):
        np.savez(su / f"{name}.npz", t=t, phi=np.linspace(0.6, 1, 50), theta=np.linspace(0.1, 0.5, 50), loss=t * 0)
    return root


def _rows(md: str, section: str) -> list[str]:
    part = md.split(f"## {section}\n")[1].split("\n## ")[0]
    return [line for line in part.splitlines() if line.startswith("| ")]


def _config_rows(md: str, section: str) -> dict[str, str]:
    rows = _rows(md, section)
    end = next(i for i, r in enumerate(rows[1:], 1) if r.startswith("| claim |")) if any(
        r.startswith("| claim |") for r in rows) else len(rows)
    return {r.split("|")[1].strip(): r for r in rows[1:end]}


def _claim_rows(md: str, section: str) -> list[str]:
    rows = _rows(md, section)
    return rows[next(i for i, r in enumerate(rows) if r.startswith("| claim |")) + 1:]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    root = make_root(tmp)
    assert report.main([str(root), "--out", str(tmp / "rep")]) == 0
    return tmp / "rep", (tmp / "rep" / "report.md").read_text()


def test_report_builds(built):
    out, md = built
    for heading in ("## kstep_sweep", "## stopgrad", "## mystery", "## su_dynamics", "## ema_vs_predictor"):
        assert heading in md
    assert "mean ± sample std (ddof = 1)" in md and "95% t interval" in md
    assert COLLAPSE_CRITERION in md
    rows = _config_rows(md, "kstep_sweep")
    assert "| 2 |" in rows["k10"] and "10-step" in rows["k10"] and "68.7" in rows["k10"]
    assert "| 39.0 ± 0.0 [39.0, 39.0] |" in rows["k10"]
    # 40 and 41: sample std 0.71 (not np.std's 0.5), 95% t interval 40.5 ± 12.706 · 0.707 / √2
    assert "| 40.5 ± 0.7 [34.1, 46.9] |" in rows["simsiam"]
    assert "| not collapsed |" in rows["simsiam"]
    sg = _config_rows(md, "stopgrad")
    assert "without stop-grad" in sg["no_stopgrad"] and "| collapsed |" in sg["no_stopgrad"]
    assert "| 20.0 |" in sg["no_stopgrad"]  # one seed: the value alone
    assert "thing" in _config_rows(md, "mystery")  # unknown study: generic table, no claims
    assert not any(r.startswith("| claim |") for r in _rows(md, "mystery"))
    for img in ("kstep_sweep/accuracy_vs_k.png", "kstep_sweep/staleness_vs_k.png",
                "stopgrad/stopgrad_panels.png", "su_dynamics/su_phase.png", "mystery/learning_curves.png"):
        assert f"]({img})" in md
        assert (out / img).stat().st_size > 0


def test_kstep_claims_are_paired_over_seeds(built):
    _, md = built
    rows = _claim_rows(md, "kstep_sweep")
    by_claim = {r.split("|")[1].strip(): r for r in rows}
    # k10 - k1 = -1, -2 -> mean -1.50, sd 0.71, interval covers 0
    assert "kNN: k10 > k1" in by_claim["10-step ≥ 1-step"]
    assert "| 2 | -1.50 ± 0.71 | [-7.85, 4.85] | unresolved | unresolved (interval covers 0) |" \
        in by_claim["10-step ≥ 1-step"]
    assert "68.7 vs 68.1" in by_claim["10-step ≥ 1-step"]
    assert "| k100 > k1 | yes |" in by_claim["100-step ≥ 1-step"]
    assert "| kepoch > k1 | no |" in by_claim["1-epoch < 1-step"]


def test_ema_claims_and_too_short(built):
    _, md = built
    rows = _config_rows(md, "ema_vs_predictor")
    assert "too short to judge: η₀ weight 0.51 > 0.05 |" in rows["ema_m0.8"]  # logged, not derived
    assert "too short to judge: η₀ weight 0.12 > 0.05, derived: m^E = 0.5^3" in rows["ema_m0.5"]
    assert "too short" not in rows["ema_m0.0"] and "too short" not in rows["simsiam"]
    claims = _claim_rows(md, "ema_vs_predictor")
    ema = [r for r in claims if "ema_m0.8" in r]
    assert len(ema) == 2 and ema[0].startswith("| EMA η without predictor")
    assert "kNN: ema_m0.8 final > init" in ema[0] and "| ema_m0.8 final > init |" in ema[0]
    assert "kNN: ema_m0.8 < simsiam" in ema[1] and "| -2.00 ± 0.00 |" in ema[1] and "| ema_m0.8 < simsiam |" in ema[1]
    assert "too short to judge: η₀ weight 0.51 > 0.05 (measured: yes)" in ema[0]
    collapse = [r for r in claims if "simsiam_no_predictor" in r]
    assert "no predictor collapses" in collapse[0] and "| yes |" in collapse[0]
    assert "z_std·√d: simsiam_no_predictor < 0.5" in collapse[1]


def test_one_seed_claims_say_so(built):
    _, md = built
    rows = _claim_rows(md, "stopgrad")
    assert rows[0].startswith("| without stop-grad it collapses")
    assert "one seed: unresolved" in rows[0] and "unresolved (one seed)" in rows[0] and "| yes |" not in rows[0]


def _ema_run(tmp_path, name, records, m="0.8"):
    d = write_run(tmp_path, name, ["method.variant=ema", f"method.ema_m={m}", "method.predictor=none"], records)
    return figures.load_runs(d)[0]


def test_init_weight_rule(tmp_path):
    derived = _ema_run(tmp_path, "a_s0", fake_records(39, 0.9, ema=True))  # 3 epochs, no column
    assert report.init_weight(derived) == (pytest.approx(0.8**3), True)
    assert "derived" in report.too_short(figures.Group("a", [derived]))
    logged = _ema_run(tmp_path, "b_s0", fake_records(39, 0.9, ema=True, init_weight=0.01))
    assert report.init_weight(logged) == (pytest.approx(0.01), False)  # the logged value wins over m^E
    assert report.too_short(figures.Group("b", [logged])) is None
    edge = _ema_run(tmp_path, "c_s0", fake_records(39, 0.9, ema=True, init_weight=0.06))
    assert report.too_short(figures.Group("c", [edge])).startswith("too short to judge: η₀ weight 0.06")
    m0 = _ema_run(tmp_path, "d_s0", fake_records(39, 0.9, ema=True), m="0.0")
    assert report.init_weight(m0) == (0.0, True) and report.too_short(figures.Group("d", [m0])) is None
    plain = figures.load_runs(write_run(tmp_path, "e_s0", [], fake_records(39, 0.9)))[0]
    assert report.init_weight(plain) is None


def test_claim_verdicts():
    p_up = report.stats.paired_difference({0: 3.0, 1: 4.0, 2: 5.0}, {0: 1.0, 1: 1.0, 2: 1.0})
    t_yes = report.Tested("x", p_up, True, "A > B", None)
    t_open = report.Tested("y", report.stats.paired_difference({0: 1.0, 1: 3.0}, {0: 2.0, 1: 2.0}), None,
                           "unresolved", None)
    t_no = report.Tested("z", p_up, False, "A > B", None)
    t_one = report.Tested("w", report.stats.paired_difference({0: 1.0}, {0: 2.0}), None, "one seed", None)
    assert report.claim_verdict([t_yes]) == "yes"
    assert report.claim_verdict([t_yes, t_open]) == "unresolved (interval covers 0)"
    assert report.claim_verdict([t_yes, t_no]) == "no"
    assert report.claim_verdict([t_one]) == "unresolved (one seed)"
    short = t_yes._replace(short="too short to judge: η₀ weight 0.64 > 0.05")
    assert report.claim_verdict([short]) == "too short to judge: η₀ weight 0.64 > 0.05 (measured: yes)"


@pytest.mark.parametrize("study", sorted(paper.STUDY_NUMBERS))
def test_paper_numbers_have_one_home(study):
    mod = importlib.import_module(f"experiments.{study}")
    labels = set(mod.STUDY.runs)
    assert mod.PAPER == paper.study_numbers(study) and set(mod.PAPER) <= labels
    for claim in paper.CLAIMS.get(study, ()):
        for c in claim.comparisons:
            assert c.a in labels and c.direction in "<>"
            bs = c.b if isinstance(c.b, tuple) else (c.b,)
            assert any(b in labels or b == paper.INIT or isinstance(b, float) for b in bs)
            for label, value in ((c.a, c.paper_a), (bs[0], c.paper_b)):
                if value is not None and label in mod.PAPER:
                    assert mod.PAPER[label] == value


def test_report_flat_dir_default_out(tmp_path):
    root = make_root(tmp_path) / "kstep_sweep"
    path = report.build_report(root)
    assert path == root / "report" / "report.md"
    assert "## kstep_sweep" in path.read_text()


def test_unfinished_run_is_not_judged_complete(tmp_path):
    root = tmp_path / "runs"
    records = fake_records(20, 0.1)
    write_run(root / "stopgrad", "no_stopgrad_s0", ["method.stopgrad=false"], records[:-1])
    write_run(root / "stopgrad", "stopgrad_s0", ["method.stopgrad=true"], fake_records(40, 0.9))
    md = report.build_report(root, tmp_path / "rep").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| no_stopgrad"))
    assert "incomplete: 1 of 1 runs short of 3 epochs" in row
    claim = next(line for line in md.splitlines() if line.startswith("| without stop-grad it collapses"))
    assert "not run: no finished no_stopgrad runs" in claim


def _save_study_tables(root, tables, studies):
    """What a sweep keeps: one tidy table per study (analysis.results), as <study>.csv."""
    df = results.collect(root)
    for study in studies:
        results.save_table(df[df["study"] == study], tables / study)


def test_report_from_tables_matches_the_runs(tmp_path, built):
    """A report rebuilt from the tidy tables has the rows of the report built from the run
    directories (``built``: the same ``make_root`` runs)."""
    root = make_root(tmp_path)
    studies = ["kstep_sweep", "ema_vs_predictor", "stopgrad", "mystery"]
    tables = tmp_path / "tables"
    _save_study_tables(root, tables, studies)
    (tables / "kstep_sweep.parquet").unlink(missing_ok=True)  # the csv is what a report keeps
    _, direct = built
    su = tmp_path / "su"  # a study only run directories hold joins the tables' studies
    (su / "su_dynamics").mkdir(parents=True)
    for f in (root / "su_dynamics").iterdir():
        (su / "su_dynamics" / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "rebuilt"
    assert report.main([str(su), "--from-table", str(tables), "--out", str(out), "--title", "T",
                        "--note", "A note."]) == 0
    md = (out / "report.md").read_text()
    assert md.startswith("# Report: T\n")
    assert f"Rebuilt from the tidy tables in `{tables}`" in md and "A note." in md
    assert f"python -m analysis.report {su} --from-table {tables} --out {out} --title T --note 'A note.'" in md
    assert "report-tables-" not in md  # no temporary folder leaks into the report
    for study in studies:  # every number, collapse state and verdict as from the run directories
        assert _rows(md, study) == _rows(direct, study), study
    assert "## su_dynamics" in md and "](su_dynamics/su_phase.png)" in md
    for img in ("kstep_sweep/accuracy_vs_k.png", "kstep_sweep/staleness_vs_k.png", "stopgrad/stopgrad_panels.png",
                "ema_vs_predictor/ema_vs_m.png", "ema_vs_predictor/expectation_gap.png"):
        assert f"]({img})" in md and (out / img).stat().st_size > 0


def test_report_from_runner_tables_and_errors(tmp_path):
    root = make_root(tmp_path)
    runner = tmp_path / "out"  # the runner's layout: OUT/<study>/results.csv
    _save_study_tables(root, tmp_path / "flat", ["stopgrad"])
    (runner / "stopgrad").mkdir(parents=True)
    (tmp_path / "flat" / "stopgrad.csv").rename(runner / "stopgrad" / "results.csv")
    assert report.table_files(runner) == [("stopgrad", runner / "stopgrad" / "results.csv")]
    md = report.build_report_from_tables(runner / "stopgrad" / "results.csv", tmp_path / "rep").read_text()
    assert "| no_stopgrad | 1 |" in md and "| collapsed |" in md
    with pytest.raises(ValueError, match="no tidy tables"):
        report.table_files(tmp_path / "rep" / "stopgrad")
    with pytest.raises(SystemExit):
        report.main(["--from-table", str(runner)])  # --out is required


def test_restore_runs_retypes_config_cells(tmp_path):
    """An int column with empty cells reads back as floats, method.k mixes ints and "epoch",
    lists are JSON cells: the restored config.yaml holds the values the run had."""
    df = pd.DataFrame({
        "run": ["s/a_s0", "s/a_s0", "s/b_s0"], "study": "s", "status": ["done", "done", "failed"],
        "epoch": [0, 2, None], "step": [0, 10, None],
        "eval/knn_top1": [30.0, 35.0, None], "bank/init_weight": [1.0, 0.64, None],
        "seed": [0, 0, 1], "method.pairs": [2.0, 2.0, None], "method.k": ["10", "10", "epoch"],
        "compile": [False, False, None], "model.convnet_widths": ["[32, 64]", "[32, 64]", None],
        "method.ema_m": [0.8, 0.8, 0.0], "data.n_train": [20000.0, 20000.0, None],
    })
    a, b = results.restore_runs(df, tmp_path)
    cfg = yaml.safe_load((a / "config.yaml").read_text())
    assert cfg["method"] == {"pairs": 2, "k": 10, "ema_m": 0.8} and cfg["compile"] is False
    assert cfg["model"]["convnet_widths"] == [32, 64] and cfg["data"]["n_train"] == 20000 and cfg["seed"] == 0
    recs = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    assert recs == [{"epoch": 0, "step": 0, "eval/knn_top1": 30.0, "bank/init_weight": 1.0},
                    {"epoch": 2, "step": 10, "eval/knn_top1": 35.0, "bank/init_weight": 0.64}]
    cfg_b = yaml.safe_load((b / "config.yaml").read_text())
    assert cfg_b["method"]["k"] == "epoch" and "pairs" not in cfg_b["method"]  # empty cell: today's default
    assert (b / "metrics.jsonl").read_text() == "" and json.loads((b / "status.json").read_text()) == {
        "status": "failed"}
    assert figures.load_runs(tmp_path) and [r.label for r in figures.load_runs(tmp_path)] == ["a"]


def test_code_versions_line(tmp_path):
    """Each study names the code its runs were trained with (git.txt); runs without one (restored
    from a table) add no line."""
    root = tmp_path / "runs"
    a, b, c = "7e31151" + "0" * 33, "cc584ca" + "1" * 33, "922457a" + "2" * 33
    lines = {"simsiam_s0": [a], "simsiam_s1": [a], "k10_s0": [a, a], "k10_s1": [b + "-dirty", c]}
    for name, shas in lines.items():
        over = ["method.variant=kstep", "method.k=10"] if name.startswith("k10") else []
        d = write_run(root / "study", name, over + [f"seed={name[-1]}"], fake_records(40, 0.9))
        (d / "git.txt").write_text("".join(f"{s} 2026-01-01T00:00:00+00:00 {'start' if i == 0 else 'resume'}\n"
                                           for i, s in enumerate(shas)))
    runs = figures.load_runs(root / "study")
    assert report.code_line(runs) == "code: 7e31151 (3 runs), cc584ca-dirty → 922457a (1 run)"
    assert report.code_line([r for r in runs if r.label == "simsiam"]) == "code: 7e31151 (2 runs)"
    md = report.build_report(root, tmp_path / "rep").read_text()
    assert "## study\n\ncode: 7e31151 (3 runs), cc584ca-dirty → 922457a (1 run)\n" in md
    (root / "study" / "k10_s1" / "git.txt").unlink()
    assert report.code_line(figures.load_runs(root / "study")) == "code: 7e31151 (3 runs), not recorded (1 run)"
    for d in (root / "study").iterdir():
        (d / "git.txt").unlink(missing_ok=True)
    assert report.code_line(figures.load_runs(root / "study")) is None
    assert "code:" not in report.build_report(root, tmp_path / "rep2").read_text()
