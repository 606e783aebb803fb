"""The installed wheel: built from this tree, installed with ``pip --target``, run from elsewhere.

What it guards: the package data (``config/stockwatch.toml``, ``py.typed``) ships in the wheel and
is found from any working directory, and ``--version``, ``train``, ``score`` and ``config`` work
from an installation that is not the source tree (nor the editable install of the venv).

Building needs setuptools with ``bdist_wheel``. When the venv has it (setuptools >= 70.1 or the
``wheel`` package), the build runs without isolation; otherwise pip builds in an isolated
environment from a local folder of the build requirements (``$STOCKWATCH_CACHE_DIR/build-requirements``,
downloaded once with ``pip download``), so later runs work offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

import config

pytestmark = pytest.mark.integration

REPO = Path(config.__file__).resolve().parent.parent
BUILD_REQUIREMENTS = ("setuptools>=68", "wheel")  # pyproject.toml [build-system] requires


def _pip(*args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def _venv_builds_wheels() -> bool:
    probe = "import importlib.util as u, sys; sys.exit(not (u.find_spec('wheel') or "
    probe += "u.find_spec('setuptools.command.bdist_wheel')))"
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def _build_wheel(src: Path, out: Path) -> Path:
    if _venv_builds_wheels():
        _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(src))
    else:
        cache = Path(os.environ.get("STOCKWATCH_CACHE_DIR") or Path.home() / ".cache" / "stockwatch")
        wheels = cache / "build-requirements"
        if not any(wheels.glob("wheel-*.whl")) or not any(wheels.glob("setuptools-*.whl")):
            _pip("download", "--quiet", "--dest", str(wheels), *BUILD_REQUIREMENTS)
        _pip("wheel", "--no-deps", "--no-index", "--find-links", str(wheels), "-w", str(out), str(src))
    (built,) = out.glob("stockwatch-*.whl")
    return built


def _copy_sources(dest: Path) -> Path:
    """The packaging inputs only: the build writes build/ and *.egg-info next to them, not in the repo."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for package in ("config", "consumer", "detection"):
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _items(path: Path, n: int = 300) -> Path:
    rng = np.random.default_rng(7)
    rows = [
        {
            "item_id": f"sku-{i}",
            "stock_quantity": int(rng.integers(60, 190)),
            "min_stock_level": 50,
            "max_stock_level": 200,
            "price": round(float(rng.uniform(5, 20)), 2),
        }
        for i in range(n)
    ]
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def test_the_installed_wheel_runs_from_any_directory_with_its_packaged_defaults(tmp_path: Path) -> None:
    wheel = _build_wheel(_copy_sources(tmp_path / "src"), tmp_path / "dist")
    target = (tmp_path / "site").resolve()
    _pip("install", "--quiet", "--no-deps", "--target", str(target), str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCKWATCH_", "PYTHON"))}
    env["PYTHONPATH"] = str(target)  # before site-packages, so the venv's editable install is shadowed

    def stockwatch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "consumer.cli", *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import config, consumer, detection; print(consumer.__file__); "
         "print(config.__file__); print(detection.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert all(Path(line).is_relative_to(target) for line in where.stdout.splitlines()), where.stdout

    version = stockwatch("--version")
    assert version.returncode == 0 and version.stdout.strip() == "stockwatch 0.1.0", version

    items = _items(elsewhere / "items.jsonl")
    train = stockwatch("train", "--detector", "seed", "--items", str(items), "--model-dir", "models")
    assert train.returncode == 0, train.stderr
    published = json.loads(train.stdout)["version"]
    assert (elsewhere / "models" / published).is_dir()

    score = stockwatch("score", "--model-dir", "models", "--input", str(items))
    assert score.returncode == 0, score.stderr
    decisions = [json.loads(line) for line in score.stdout.splitlines()]
    assert len(decisions) == 300 and {d["model_version"] for d in decisions} == {published}

    shown = stockwatch("config", "--json")
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    packaged = target / "config" / "stockwatch.toml"
    assert packaged.is_file()
    assert settings["kafka_bootstrap"] == {
        "value": "127.0.0.1:9092",
        "source": str(packaged),
        "env": "STOCKWATCH_KAFKA_BOOTSTRAP",
    }
    assert settings["model_dir"]["source"] == str(packaged)
