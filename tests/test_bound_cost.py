"""The exact bound's cost against the N(0,1) KL: measured, flagged over budget by the build, in the table and card."""

from __future__ import annotations

import torch

from dwp_hub import DWPrior, PriorConfig
from training.bound_cost import (BOUND_COST_BUDGETS, BoundCost, budget_for, csv_row, measure_bound_cost, read_costs,
                                 write_costs)
from training.build import Build
from training.card import render_card
from training.priors_table import priors_table

PRIOR = "dwp/text-3x3"  # a bundled dense prior: the cheapest bound to time


def test_the_measurement_times_both_kls_and_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    cost = measure_bound_cost(DWPrior.from_pretrained(PRIOR), kernels=64, rounds=2, warmup=0, threads=1)
    assert torch.get_num_threads() == before
    assert cost.bound_us > 0 and cost.normal_us > 0 and cost.ratio == cost.bound_us / cost.normal_us
    assert (cost.kernel_size, cost.architecture, cost.kernels, cost.threads) == (3, "dwp-dense-3x3", 64, 1)


def test_the_build_records_the_cost_and_warns_over_budget(tmp_path, capsys) -> None:
    build = Build(tmp_path, tiny=True, progress=False)
    prior = DWPrior.from_pretrained(PRIOR)
    within = build.bound_cost("text-3x3", prior, budget=1e9, kernels=64, rounds=1)
    assert within["over_budget"] is False and within["ratio_to_normal_kl"] > 0
    assert "WARNING" not in capsys.readouterr().err
    over = build.bound_cost("text-3x3", prior, budget=1e-3, kernels=64, rounds=1)  # every prior breaks this budget
    assert over["over_budget"] is True and over["budget"] == 1e-3
    assert "WARNING: text-3x3 is over the bound-cost budget" in capsys.readouterr().err


def test_the_budget_is_the_kernel_sizes_and_the_csv_row_records_it() -> None:
    """A 7x7 layer is rare in a model (a stem), a 3x3 layer is most of it: one ratio, two verdicts."""
    assert BOUND_COST_BUDGETS[3] < BOUND_COST_BUDGETS[7] and budget_for(9) == BOUND_COST_BUDGETS[3]
    ratio = (BOUND_COST_BUDGETS[3] + BOUND_COST_BUDGETS[7]) / 2
    costs = {k: BoundCost(k, f"dwp-vae-{k}x{k}", bound_us=ratio, normal_us=1.0, kernels=4096, threads=2, rounds=5)
             for k in (3, 7)}
    assert costs[3].over_budget() and not costs[7].over_budget()
    assert costs[7].record()["budget"] == BOUND_COST_BUDGETS[7] and costs[7].record(budget=1.0)["over_budget"] is True
    rows = {k: csv_row(f"dwp/x-{k}x{k}", c) for k, c in costs.items()}
    assert (rows[3]["budget"], rows[3]["over_budget"]) == (f"{BOUND_COST_BUDGETS[3]:g}", "true")
    assert (rows[7]["budget"], rows[7]["over_budget"]) == (f"{BOUND_COST_BUDGETS[7]:g}", "false")


def _cost(ratio: float) -> BoundCost:
    return BoundCost(3, "dwp-dense-3x3", bound_us=ratio, normal_us=1.0, kernels=4096, threads=2, rounds=5)


def test_the_priors_table_shows_each_measured_ratio_and_flags_one_over_budget(tmp_path) -> None:
    assert 6.5 < budget_for(3) < 187
    csv = tmp_path / "bound-cost.csv"
    write_costs([csv_row("dwp/text-3x3", _cost(6.5)), csv_row("dwp/photo-3x3", _cost(187))], csv)
    assert read_costs(csv)["dwp/photo-3x3"]["over_budget"] == "true"
    rows = {line.split(" | ")[0].strip("| `"): line for line in priors_table(csv).splitlines()}
    assert "exact bound's cost (× N(0,1) KL)" in rows["prior"]
    assert "| 6.5× |" in rows["dwp/text-3x3"]
    assert f"| 187.0× (over budget {budget_for(3):g}×) |" in rows["dwp/photo-3x3"]
    assert "| — |" in rows["dwp/notmnist-7x7"]  # no row in the CSV


def test_the_card_states_the_cost_recorded_by_the_build() -> None:
    config = PriorConfig(kernel_size=3, z_dim=2, architecture="dwp-vae-3x3", domain="photo")
    assert "Cost in variational inference" not in render_card(config, {}, {})
    over = render_card(config, {"bound_cost": _cost(187).record(budget=10)}, {})
    assert "costs 187× the N(0,1) KL's" in over and "**over** the budget of 10×" in over
    within = render_card(config, {"bound_cost": _cost(6).record(budget=10)}, {})
    assert "costs 6× the N(0,1) KL's" in within and "within the budget of 10×" in within


def test_every_bundled_card_states_a_cost_within_the_budget() -> None:
    """Each shipped prior's card (the README a user sees in `dwp-hub info` and on the Hub) names the exact bound's
    cost per kernel as a ratio to the N(0,1) KL and a budget it meets, at most its kernel size's; the benchmark's
    CSV agrees."""
    import re

    from dwp_hub import list_priors

    costs = read_costs()
    for name in (p.name for p in list_priors() if p.source == "bundled"):
        prior = DWPrior.from_pretrained(name)
        budget = budget_for(prior.kernel_size)
        stated = re.search(r"costs (\d+(?:\.\d+)?)× the N\(0,1\) KL's forward (?:and|\+) backward per kernel[^.]*, "
                           r"within the (?:budget of )?(\d+)×", prior.card)
        assert stated, f"{name}: its card states no cost within a budget"
        assert float(stated.group(1)) <= float(stated.group(2)) <= budget  # a stricter budget met is this one met
        assert costs[name]["over_budget"] == "false" and float(costs[name]["budget"]) == budget, name
