"""Cluster-launcher configs: valid for Ray's own schema, and they install everything run.py imports."""

from __future__ import annotations

import ast
import copy
import importlib.metadata
import re
import sys
from pathlib import Path

import jsonschema
import pytest
import tomllib
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "clusters").glob("*.yaml"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_both_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"gpu.yaml", "local.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_passes_rays_schema(path: Path) -> None:
    validate_config(prepare_config(copy.deepcopy(load(path))))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_schema_check_catches_typos_and_wrong_types(path: Path) -> None:
    typo = load(path)
    typo["setup_comands"] = typo.pop("setup_commands")
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(typo))
    wrong = load(path)
    wrong["idle_timeout_minutes"] = "ten"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(wrong))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_setup_installs_the_synced_project(path: Path) -> None:
    cfg = load(path)
    assert cfg["file_mounts"].get("~/zsltune") == "."  # the repository, synced to every node
    setup = " ".join(cfg["setup_commands"])
    assert re.search(r"pip install -e ~/zsltune\b", setup), setup
    for cmds in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        assert any("ray start" in c for c in cmds)


def test_gpu_workers_expose_gpus_to_containers_and_a_big_shm() -> None:
    cfg = load(ROOT / "clusters" / "gpu.yaml")
    opts = " ".join(cfg["docker"]["run_options"])
    assert "--gpus all" in opts and "--shm-size" in opts
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"] == {"CPU": 0}  # no trial on the head


def _third_party_imports() -> set[str]:
    names: set[str] = set()
    for f in [*(ROOT / "zsltune").rglob("*.py"), *(ROOT / "analysis").rglob("*.py")]:  # analysis/: zsltune.analysis
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "zsltune"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_installing_the_project_installs_everything_zsltune_imports() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {_norm(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in deps}
    dist_of = importlib.metadata.packages_distributions()
    missing = {}
    for module in _third_party_imports():
        dists = {_norm(d) for d in dist_of.get(module, [module])}
        if not dists & declared:
            missing[module] = sorted(dists)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
