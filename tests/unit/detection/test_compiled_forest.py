"""CompiledForest must score exactly like sklearn's IsolationForest (fixed seeds throughout)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import StandardScaler

from detection.compiled_forest import PARALLEL_MIN_ROWS, CompiledForest, fast_offset

REPO = Path(__file__).resolve().parents[3]
N_FEATURES = 7


def _training_data(n: int, seed: int) -> np.ndarray:
    """Skewed, correlated, partly integer-valued columns, scaled like the real features."""
    rng = np.random.default_rng(seed)
    stock = rng.poisson(40, size=n).astype(float)
    raw = np.column_stack(
        [
            stock,
            stock + rng.normal(0, 5, n),
            rng.lognormal(2, 1, n),
            rng.integers(0, 3, n),
            rng.normal(0, 1, n),
            rng.exponential(3, n),
            rng.uniform(-1, 1, n).round(2),
        ]
    )
    return StandardScaler().fit_transform(raw)


FOREST_CASES = {
    "seed-params-5000": (5000, {"contamination": 0.1, "random_state": 42}),
    "int-samples-subfeatures": (
        1000,
        {
            "n_estimators": 37,
            "max_samples": 64,
            "max_features": 0.6,
            "contamination": 0.05,
            "random_state": 1,
        },
    ),
    "float-samples-3-features": (
        2000,
        {"n_estimators": 20, "max_samples": 0.5, "max_features": 3, "contamination": 0.3, "random_state": 2},
    ),
    "deep-trees": (3000, {"n_estimators": 10, "max_samples": 1.0, "random_state": 3}),
    "tiny-n10": (10, {"contamination": "auto", "random_state": 4}),
    "one-sample-trees": (50, {"n_estimators": 5, "max_samples": 1, "random_state": 5}),
}


@pytest.fixture(scope="module", params=list(FOREST_CASES))
def fitted(request: pytest.FixtureRequest) -> tuple[IsolationForest, np.ndarray]:
    n, params = FOREST_CASES[request.param]
    x = _training_data(n, seed=n)
    return IsolationForest(**params).fit(x), x


def _thresholds(forest: IsolationForest) -> np.ndarray:
    return np.concatenate([e.tree_.threshold[e.tree_.children_left != -1] for e in forest.estimators_])


def _adversarial_rows(forest: IsolationForest, train: np.ndarray, seed: int) -> np.ndarray:
    """Values on and next to every split threshold, extremes, zeros, negatives, training duplicates."""
    rng = np.random.default_rng(seed)
    thr = _thresholds(forest)
    f32 = thr.astype(np.float32)
    candidates = np.concatenate(
        [
            thr,
            np.nextafter(thr, np.inf),
            np.nextafter(thr, -np.inf),
            f32.astype(np.float64),
            np.nextafter(f32, np.float32(np.inf)).astype(np.float64),
            np.nextafter(f32, np.float32(-np.inf)).astype(np.float64),
        ]
    )
    base = train[rng.integers(0, len(train), size=len(candidates))].copy()
    one_column = base.copy()
    one_column[np.arange(len(candidates)), rng.integers(0, N_FEATURES, size=len(candidates))] = candidates
    every_column = np.repeat(candidates[:, None], N_FEATURES, axis=1)
    extremes = np.array([0.0, -0.0, -1.0, 1e12, -1e12, 1e30, -1e30, 1e300, -1e300, np.inf, -np.inf, 5e-324])
    extreme_rows = rng.choice(extremes, size=(400, N_FEATURES))
    mixed = train[rng.integers(0, len(train), size=400)].copy()
    mask = rng.random(mixed.shape) < 0.3
    mixed[mask] = rng.choice(extremes, size=int(mask.sum()))
    return np.vstack([one_column, every_column, extreme_rows, mixed, np.zeros((1, N_FEATURES)), train])


def _random_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0, 1, (n, N_FEATURES)), rng.normal(0, 8, (n, N_FEATURES))])


def _assert_same(sk: np.ndarray, ours: np.ndarray) -> None:
    assert ours.shape == sk.shape
    assert ours.dtype == np.float64
    assert np.max(np.abs(ours - sk)) <= 1e-12
    np.testing.assert_array_equal(ours < 0, sk < 0)


def _sklearn(forest: IsolationForest, x: np.ndarray, method: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow of 1e300 -> inf
        result: np.ndarray = getattr(forest, method)(x)
    return result


@pytest.mark.parametrize("method", ["decision_function", "score_samples"])
def test_parity_random_and_adversarial(fitted, method):
    forest, train = fitted
    compiled = CompiledForest.from_sklearn(forest)
    for x in (_random_rows(2500, seed=10), _adversarial_rows(forest, train, seed=11)):
        sk = _sklearn(forest, x, method)
        ours = getattr(compiled, method)(x)
        _assert_same(sk, ours)
        np.testing.assert_array_equal(ours, sk)  # in fact bit-identical


def test_predictions_identical(fitted):
    forest, train = fitted
    x = np.vstack([_random_rows(1000, seed=12), _adversarial_rows(forest, train, seed=13)])
    compiled = CompiledForest.from_sklearn(forest)
    np.testing.assert_array_equal(
        np.where(compiled.decision_function(x) < 0, -1, 1), _sklearn(forest, x, "predict")
    )


def test_offset_and_relation(fitted):
    forest, _ = fitted
    compiled = CompiledForest.from_sklearn(forest)
    assert compiled.offset == forest.offset_
    assert compiled.n_features == N_FEATURES
    x = _random_rows(300, seed=14)
    np.testing.assert_allclose(compiled.score_samples(x) - compiled.offset, compiled.decision_function(x))


def test_nan_rows_follow_the_fitted_missing_value_direction():
    x = _training_data(800, seed=20)
    rng = np.random.default_rng(21)
    x[rng.random(x.shape) < 0.05] = np.nan  # trees then send NaN randomly left or right
    forest = IsolationForest(random_state=22, contamination=0.1).fit(x)
    x_test = _random_rows(500, seed=23)
    x_test[rng.random(x_test.shape) < 0.2] = np.nan
    x_test[:5] = np.nan
    for trained_on in (forest, IsolationForest(random_state=24).fit(_training_data(800, seed=25))):
        compiled = CompiledForest.from_sklearn(trained_on)
        np.testing.assert_array_equal(
            compiled.decision_function(x_test), trained_on.decision_function(x_test)
        )


def test_single_row_equals_batch_and_parallel_path():
    forest = IsolationForest(random_state=42, contamination=0.1).fit(_training_data(3000, seed=30))
    compiled = CompiledForest.from_sklearn(forest)
    x = _random_rows(PARALLEL_MIN_ROWS, seed=31)  # 2x the threshold: multi-threaded kernel
    batch = compiled.decision_function(x)
    np.testing.assert_array_equal(batch, forest.decision_function(x))
    np.testing.assert_array_equal(compiled.decision_function(x[:10]), batch[:10])
    scores = compiled.score_samples(x)
    for i in range(0, len(x), 997):
        one = compiled.decision_function(x[i])
        assert one.shape == (1,)
        assert one[0] == batch[i]
        assert compiled.decision_function(x[i : i + 1])[0] == batch[i]
        assert compiled.score_samples(x[i])[0] == scores[i]


def test_other_dtypes_and_layouts_match_sklearn():
    forest = IsolationForest(random_state=7, max_features=0.5).fit(_training_data(1000, seed=40))
    compiled = CompiledForest.from_sklearn(forest)
    x = _random_rows(200, seed=41)
    for variant in (
        x.astype(np.float32),
        np.asfortranarray(x),
        np.hstack([x, x])[:, ::2],
        (x * 10).astype(np.int64),
        x.tolist(),
    ):
        np.testing.assert_array_equal(compiled.decision_function(variant), forest.decision_function(variant))
    assert compiled.decision_function(np.empty((0, N_FEATURES))).shape == (0,)


@pytest.mark.parametrize("contamination", [0.1, 0.05, 0.3])
def test_fast_offset_equals_sklearn_offset(contamination):
    x = _training_data(4000, seed=50)
    reference = IsolationForest(random_state=42, contamination=contamination).fit(x)
    cheap = IsolationForest(random_state=42, contamination="auto").fit(x)
    assert cheap.offset_ == -0.5
    offset = fast_offset(cheap, x, contamination)
    assert offset == reference.offset_
    cheap.offset_ = offset
    x_test = _random_rows(500, seed=51)
    np.testing.assert_array_equal(cheap.decision_function(x_test), reference.decision_function(x_test))
    np.testing.assert_array_equal(
        CompiledForest.from_sklearn(cheap).decision_function(x_test), reference.decision_function(x_test)
    )


def test_fast_offset_rejects_non_float_contamination():
    forest = IsolationForest(random_state=0).fit(_training_data(100, seed=52))
    for bad in ("auto", 0.0, 0.7):
        with pytest.raises(ValueError, match="contamination"):
            fast_offset(forest, _training_data(100, seed=52), bad)


@pytest.mark.parametrize(
    "shape",
    [(N_FEATURES - 1,), (N_FEATURES + 1,), (3, N_FEATURES - 1), (3, N_FEATURES + 2), (2, 3, N_FEATURES)],
)
def test_wrong_number_of_features_raises(shape):
    compiled = CompiledForest.from_sklearn(IsolationForest(random_state=0).fit(_training_data(100, seed=60)))
    with pytest.raises(ValueError, match=f"fitted on {N_FEATURES} features"):
        compiled.decision_function(np.zeros(shape))
    with pytest.raises(ValueError, match="features"):
        compiled.score_samples(np.zeros(shape))


def test_non_numeric_input_and_unfitted_forest_raise():
    compiled = CompiledForest.from_sklearn(IsolationForest(random_state=0).fit(_training_data(100, seed=61)))
    with pytest.raises(ValueError, match="real numbers"):
        compiled.decision_function(np.zeros((1, N_FEATURES), dtype=complex))
    with pytest.raises(NotFittedError):
        CompiledForest.from_sklearn(IsolationForest())


def test_pickle_round_trip():
    forest = IsolationForest(random_state=0).fit(_training_data(500, seed=70))
    compiled = CompiledForest.from_sklearn(forest)
    restored = pickle.loads(pickle.dumps(compiled))
    x = _random_rows(100, seed=71)
    np.testing.assert_array_equal(restored.decision_function(x), compiled.decision_function(x))
    assert restored.offset == compiled.offset


def test_imports_lazily_and_works_without_a_usable_cache_dir(tmp_path):
    """Importing compiles nothing; with no writable cache location numba falls back to no caching."""
    package = tmp_path / "detection"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "compiled_forest.py").write_text((REPO / "detection" / "compiled_forest.py").read_text())
    (package / "__pycache__").write_text("a file where numba wants its cache directory")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    script = textwrap.dedent(
        """
        import numpy as np
        from sklearn.ensemble import IsolationForest
        from detection import compiled_forest as cf
        assert cf._score_serial.signatures == [], "compiled at import time"
        assert type(cf._score_serial._cache).__name__ == "NullCache", "expected the no-cache fallback"
        x = np.random.default_rng(0).normal(size=(200, 3))
        forest = IsolationForest(n_estimators=5, random_state=0).fit(x)
        assert (cf.CompiledForest.from_sklearn(forest).decision_function(x) == forest.decision_function(x)).all()
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env |= {"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": str(blocker / "x")}
    env["HOME"] = str(blocker)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
