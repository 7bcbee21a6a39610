import numpy as np
import pytest

from monoculture.metrics.stats import bootstrap_mean, paired_bootstrap, resample_counts


def test_counts_are_resamples():
    c = resample_counts(37, 200, seed=1)
    assert c.shape == (200, 37)
    assert (c.sum(axis=1) == 37).all()
    np.testing.assert_array_equal(c, resample_counts(37, 200, seed=1))
    assert not np.array_equal(c, resample_counts(37, 200, seed=2))


def test_interval_covers_true_mean_at_nominal_rate():
    rng = np.random.default_rng(0)
    covered = 0
    trials = 200
    for t in range(trials):
        x = rng.normal(2.0, 1.0, size=60)
        e = bootstrap_mean(x, n_boot=400, seed=t)
        covered += e.lo <= 2.0 <= e.hi
        assert e.value == pytest.approx(x.mean())
    assert 0.88 <= covered / trials <= 0.99


def test_nan_prompts_are_ignored_not_zero():
    x = np.array([1.0, np.nan, 3.0, np.nan, 2.0] * 4)
    e = bootstrap_mean(x, n_boot=300, seed=0)
    assert e.value == pytest.approx(2.0)
    assert e.prompts == 12
    assert 1.0 <= e.lo <= e.hi <= 3.0


def test_deterministic_and_few_prompt_flag():
    x = np.arange(8.0)
    a, b = bootstrap_mean(x, seed=4), bootstrap_mean(x, seed=4)
    assert a == b and a.few_prompts
    assert not bootstrap_mean(np.arange(12.0)).few_prompts


def test_paired_bootstrap_uses_pairing():
    rng = np.random.default_rng(1)
    prompt_effect = rng.normal(0, 5, size=80)  # large, shared by both figures
    a = prompt_effect + 0.3 + rng.normal(0, 0.1, 80)
    b = prompt_effect + rng.normal(0, 0.1, 80)
    d = paired_bootstrap(a, b, seed=0)
    assert d.estimate.lo > 0.2 and d.estimate.hi < 0.4
    assert d.p_value < 0.01
    same = paired_bootstrap(b, b + rng.normal(0, 0.1, 80), seed=0)
    assert same.estimate.lo < 0 < same.estimate.hi and same.p_value > 0.05
