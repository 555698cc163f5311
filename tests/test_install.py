"""Installation and the tool commands: --version, presets, sweep/report from any directory, extras."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from emsiam.cli import main
from emsiam.config import ConfigError, load_config, presets

ROOT = Path(__file__).resolve().parent.parent


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert re.match(r"emsiam \d+\.\d+\.\d+ \(torch [^,]+, torchvision [^,]+, Python 3\.", capsys.readouterr().out)


def test_presets_have_one_line_descriptions(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == presets()
    for line in lines:
        assert len(line.split(None, 1)[1]) > 20 and line.endswith(".")


def _outside(*args, cwd):
    """Run python -m emsiam from another directory, without the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "emsiam", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_sweep_and_report_work_from_any_directory(tmp_path):
    r = _outside("sweep", "kstep_sweep", "--dry-run", "--preset", "demo", "--out", "runs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "simsiam_s0" in r.stdout and not (tmp_path / "runs").exists()
    r = _outside("report", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "runs_dir" in r.stdout
    r = _outside("sweep", "no_such_study", cwd=tmp_path)
    assert r.returncode == 2 and "kstep_sweep" in r.stderr


def test_default_name_is_a_timestamp_and_required_under_torchrun(monkeypatch):
    assert re.fullmatch(r"\d{8}-\d{6}", load_config(None, []).name)
    assert load_config(None, ["name=x"]).name == "x"
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="name=... is required"):
        load_config(None, [])


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_dependency_ranges_and_extras():
    proj = _pyproject()["project"]
    deps = {re.split(r"[<>=!~ ]", d, 1)[0]: d for d in proj["dependencies"]}
    for name in ("torch", "torchvision"):  # a ceiling below the next minor, never an exact patch pin
        assert "<=" not in deps[name] and re.search(r"<\d+\.\d+$", deps[name]), deps[name]
    assert not any(d.startswith(("lightly", "kornia")) for d in proj["optional-dependencies"]["dev"])
    assert set(proj["optional-dependencies"]["bench"]) >= {"kornia>=0.7", "lightly>=1.5"}
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {"emsiam*", "experiments*", "analysis*"} <= set(include)
    makefile = (ROOT / "Makefile").read_text()
    venv_recipe = makefile.split("$(STAMP): pyproject.toml\n")[1].split("\n\n")[0]  # what `make test` installs
    assert "pip install -q --no-compile -e '.[dev]'" in venv_recipe and "bench" not in venv_recipe
    assert "compileall" in venv_recipe  # pip is told not to compile: the venv is compiled on every core instead


def test_environment_yml_mirrors_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {re.split(r"[<>=!~ ]", d, 1)[0]: d for d in conda + pip}
    for dep in _pyproject()["project"]["dependencies"] + _pyproject()["project"]["optional-dependencies"]["dev"]:
        name = re.split(r"[<>=!~ ]", dep, 1)[0]
        assert listed.get(name) == dep, f"environment.yml: {name} should read {dep}"
    assert not any(name in listed for name in ("lightly", "kornia"))


def test_no_test_imports_a_bench_only_package():
    pattern = re.compile(r"^\s*(import|from)\s+(lightly|kornia)\b", re.M)
    for path in (ROOT / "tests").glob("*.py"):
        assert not pattern.search(path.read_text()), f"{path.name} imports a bench-only package"
