"""The comparison's verdict is calibrated: simulated methods identical to the baseline are called
different in at most 5% of tables, and a real shift of a stated size is found."""

import random

import pytest


def simulate(methods: int, baseline_seeds: int, method_seeds: int, shift: float, tables: int, seed: int = 0):
    """Tables of ``methods`` methods against a baseline, seed noise N(0, 1); the first method is shifted
    by ``shift`` standard deviations. Returns (tables where an unshifted method was called different,
    tables where the shifted one was called worse), as fractions."""
    from efficient_bert.tools.compare.verdict import NO_DIFFERENCE, WORSE, compare_with_baseline

    rng = random.Random(seed)
    false_calls = found = 0
    for _ in range(tables):
        base = [rng.gauss(0.0, 1.0) for _ in range(baseline_seeds)]
        rows = {f"m{i}": [rng.gauss(shift if i == 0 else 0.0, 1.0) for _ in range(method_seeds)]
                for i in range(methods)}
        verdicts = compare_with_baseline(base, rows)
        unshifted = range(1 if shift else 0, methods)
        false_calls += any(verdicts[f"m{i}"].verdict != NO_DIFFERENCE for i in unshifted)
        found += verdicts["m0"].verdict == WORSE
    return false_calls / tables, found / tables


@pytest.mark.parametrize("methods,method_seeds", [(10, 2), (10, 1), (3, 2), (1, 3)])
def test_identical_methods_are_called_different_in_at_most_5_percent_of_tables(methods, method_seeds):
    false_rate, _ = simulate(methods, baseline_seeds=3, method_seeds=method_seeds, shift=0.0, tables=3000)
    print(f"{methods} identical methods x {method_seeds} seeds against 3 baseline seeds: "
          f"{100 * false_rate:.1f}% of 3000 tables call one different")
    assert false_rate <= 0.05


def test_a_shift_of_four_seed_deviations_is_found_with_two_seeds_a_method():
    """compare's default design: baseline 3 seeds, each method 2. Among 9 other methods identical to the
    baseline, one 4 standard deviations worse is called worse in about 80% of tables, 6 in 99%."""
    _, at_four = simulate(10, 3, 2, shift=4.0, tables=2000)
    _, at_six = simulate(10, 3, 2, shift=6.0, tables=2000)
    print(f"shift 4 sd found in {100 * at_four:.1f}% of tables, 6 sd in {100 * at_six:.1f}%")
    assert at_four >= 0.75 and at_six >= 0.98


def test_p_values_and_holm_against_scipy():
    from scipy import stats

    from efficient_bert.tools.compare.verdict import holm, pooled_variance, t_two_sided_p

    for t, df in [(0.5, 1), (2.0, 2), (4.303, 2), (1.0, 10), (3.0, 5), (10.0, 3), (2.5, 100)]:
        assert t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9)
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}, 0.05) == {"a"}  # 0.03 > 0.05 / 2 stops the steps
    assert holm({"a": 0.01, "b": 0.02, "c": 0.04}, 0.05) == {"a", "b", "c"}
    variance, df = pooled_variance([[1.0, 2.0, 3.0], [5.0], [2.0, 4.0]])
    assert (variance, df) == (pytest.approx((2 * 1.0 + 2.0) / 3), 3)


def test_without_a_second_seed_nothing_is_called():
    from efficient_bert.tools.compare.verdict import UNDECIDED, compare_with_baseline

    verdicts = compare_with_baseline([3.0], {"lion": [2.0]})
    assert verdicts["lion"].verdict == UNDECIDED and verdicts["lion"].delta == -1.0 and verdicts["lion"].p is None
