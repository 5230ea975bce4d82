"""The report's verdicts: paired by seed, a t interval and p-value checked against hand computations."""

import math

import pytest

from pfa.study.summary import comparisons, paired_difference, welch_difference

# Student's t with 2 degrees of freedom has the closed form CDF F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so
# its 97.5 % quantile solves t / sqrt(2 + t^2) = 0.95: t^2 = 2 * 0.9025 / 0.0975.
T_975_DF2 = math.sqrt(2 * 0.9025 / 0.0975)  # 4.3027


def two_sided_p_df2(t: float) -> float:
    return 1 - t / math.sqrt(2 + t * t)


def test_paired_interval_holding_zero_is_no_evidence():
    # differences 0.01, 0.02, 0.01: mean 0.04/3, sample std sqrt(1/3) * 0.01, standard error 0.01/3
    diff = paired_difference([0.91, 0.92, 0.90], [0.90, 0.90, 0.89])
    mean, se = 0.04 / 3, 0.01 / 3
    assert diff.mean == pytest.approx(mean)
    assert (diff.low, diff.high) == pytest.approx((mean - T_975_DF2 * se, mean + T_975_DF2 * se))
    assert diff.low < 0 < diff.high and diff.verdict == "no evidence either way"
    assert diff.p == pytest.approx(two_sided_p_df2(4.0))  # t = mean / se = 4: p = 0.057


def test_paired_interval_excluding_zero_gives_the_sign():
    # differences 0.02, 0.03, 0.025: mean 0.025, std 0.005, standard error 0.005 / sqrt(3)
    better = paired_difference([0.92, 0.93, 0.925], [0.90, 0.90, 0.90])
    se = 0.005 / math.sqrt(3)
    assert (better.low, better.high) == pytest.approx((0.025 - T_975_DF2 * se, 0.025 + T_975_DF2 * se))
    assert better.verdict == "better" and better.p == pytest.approx(two_sided_p_df2(0.025 / se))
    worse = paired_difference([0.90, 0.90, 0.90], [0.92, 0.93, 0.925])
    assert worse.verdict == "worse" and (worse.low, worse.high) == pytest.approx((-better.high, -better.low))


def test_pairing_removes_the_seed_to_seed_spread():
    # seeds move both configurations together: unpaired, their 2-point spread hides a steady half a point
    a, b = [0.906, 0.884, 0.926], [0.90, 0.88, 0.92]
    assert paired_difference(a, b).verdict == "better"
    assert welch_difference(a, b).verdict == "no evidence either way"
    identical = paired_difference(b, b)
    assert (identical.low, identical.high, identical.p, identical.verdict) == (0, 0, 1.0, "no evidence either way")


def test_welch_interval_by_hand():
    # variances 1e-4 each, n = 3 each: se^2 = 2e-4 / 3, and Welch-Satterthwaite gives df = 4
    diff = welch_difference([0.92, 0.93, 0.94], [0.90, 0.91, 0.92])
    t_975_df4 = 2.7764451051977987
    se = math.sqrt(2e-4 / 3)
    assert (diff.mean, diff.low, diff.high) == pytest.approx((0.02, 0.02 - t_975_df4 * se, 0.02 + t_975_df4 * se))


def rows(accuracies: dict[int, float]) -> list[dict]:
    return [{"seed": seed, "final_test_acc": acc} for seed, acc in accuracies.items()]


def test_comparisons_pair_by_seed_and_fall_back_to_welch():
    groups = {
        "none": rows({1: 0.90, 2: 0.88, 3: 0.92}),
        "pfa rank=4": rows({1: 0.906, 2: 0.884, 3: 0.926}),
        "pfa rank=16": rows({3: 0.93, 4: 0.91, 5: 0.92}),  # one seed in common: not pairs
        "pfa rank=1": rows({1: 0.95}),  # one run: no test
    }
    lines = comparisons(groups, ["none"])
    # differences 0.6, 0.4, 0.6 points: standard error 0.2/3, t = 8, p = 1 - 8 / sqrt(66)
    assert lines[0] == ("- pfa rank=4 vs none: +0.53 points (95 % CI +0.25 to +0.82; paired over seeds 1, 2, 3, "
                        "p = 0.015): **better**.")
    assert lines[1].startswith("- pfa rank=16 vs none: +2.00 points (95 % CI ") and "Welch, n = 3 vs 3" in lines[1]
    assert len(lines) == 2


def test_a_later_baseline_is_compared_with_the_earlier_ones_but_not_twice():
    groups = {"none": rows({1: 0.90, 2: 0.88}), "pfa relu": rows({1: 0.85, 2: 0.84}),
              "pfa pass": rows({1: 0.87, 2: 0.85})}
    heads = [line.split(":")[0] for line in comparisons(groups, ["none", "pfa relu"])]
    assert heads == ["- pfa relu vs none", "- pfa pass vs none", "- pfa pass vs pfa relu"]
