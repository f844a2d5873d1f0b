"""The cached path of an audit loads no heavy package it does not use: a score-based audit
whose models are all cached reads their logits and never imports PyTorch (nor
scikit-learn, scipy.stats, Opacus, Ray or, as it draws no report, matplotlib); the
registry imports an attack's module only when its class is asked for."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mialens.attacks.registry import ATTACKS
from mialens.workflows.audit import run_audit
from mialens.workflows.config import load_config

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = (
    *("torch", "sklearn", "scipy.stats", "scipy.sparse", "scipy.spatial", "opacus", "ray"),
    "matplotlib",
)

_CACHED_AUDIT = """
import hashlib, json, sys
import mialens, mialens.cli, mialens.models, mialens.targets, mialens.attacks
from mialens.workflows.audit import run_audit
from mialens.workflows.config import load_config

config = load_config(sys.argv[1], [f"audit.cache_dir={sys.argv[2]}"])
loaded = {"imported": [m for m in HEAVY if m in sys.modules]}
result = run_audit(config)
loaded["after"] = [m for m in HEAVY if m in sys.modules]
scores = b"".join(result.scores[name].tobytes() for name in sorted(result.scores))
loaded["scores"] = hashlib.sha256(scores).hexdigest()
print(json.dumps(loaded))
"""

_CONFIG = """\
dataset: {name: npz, path: DATA}
model: {arch: mlp, hidden: [8]}
train: {epochs: 1, batch_size: 64}
audit:
  num_models: 4
  pool_size: 200
  bootstrap: 0
  attacks: [loss, confidence, mentr, attack_p, lira_offline, rmia_online]
"""


def _run(script: str, *args: str) -> dict:
    code = f"HEAVY = {HEAVY!r}\n{script}"
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_and_the_audit_loads_no_heavy_package():
    script = """
import json, sys
import mialens.cli, mialens.models, mialens.targets, mialens.attacks, mialens.metrics
import mialens.workflows.audit, mialens.workflows.config, mialens.workflows.outputs
import mialens.models.store, mialens.models.model_config, mialens.audit.training_plan
print(json.dumps({"imported": [m for m in HEAVY if m in sys.modules]}))
"""
    assert _run(script)["imported"] == []


def test_the_data_sources_load_the_network_stack_only_to_download():
    script = """
import json, sys
import mialens.data, mialens.data.download, mialens.workflows.audit, mialens.workflows.config
print(json.dumps({"imported": [m for m in HEAVY if m in sys.modules]}))
"""
    network = ("urllib.request", "http.client", "ssl")
    assert _run(f"HEAVY = {network!r}\n{script}")["imported"] == []


def test_a_cached_score_based_audit_never_imports_torch(tmp_path):
    gen = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    ids = gen.permutation(300) * 7 + 3  # shuffled, non-contiguous
    np.savez(data, x=gen.normal(size=(300, 6)), y=gen.integers(0, 3, 300), ids=ids)
    config = tmp_path / "audit.yaml"
    config.write_text(_CONFIG.replace("DATA", str(data)))
    cache = tmp_path / "cache"
    trained = run_audit(load_config(config, [f"audit.cache_dir={cache}"]))  # fills the cache
    assert not any(record["cached"] for record in trained.training)
    again = _run(_CACHED_AUDIT, str(config), str(cache))
    assert again == {"imported": [], "after": [], "scores": _digest(trained.scores)}


def _digest(scores: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(b"".join(scores[name].tobytes() for name in sorted(scores))).hexdigest()


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_registry_gives_every_attack_under_its_name(name):
    assert ATTACKS[name].name == name


def test_the_figure_worker_loads_the_drawing_alone():
    script = """
import json, sys
import mialens.report.figure_worker, mialens.report.plots
print(json.dumps({"imported": [m for m in HEAVY if m in sys.modules]}))
"""
    beyond_drawing = ("scipy", "mialens.metrics", "mialens.audit", "pydantic", "jinja2")
    assert _run(f"HEAVY = {beyond_drawing!r}\n{script}")["imported"] == []
