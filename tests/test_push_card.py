"""Model cards rendered from cards/template.md: Hub metadata that parses, honest data sets, merged parts."""

import math

import pytest
from huggingface_hub import ModelCard

from dwp_hub import PriorConfig
from training.card import CARDS_DIR, render_card

METRICS = {"heldout_elbo": 101.25, "heldout_iwae_loglik": 102.5, "iwae_samples": 1000, "kernels_kept": 2345,
           "num_source_nets": 10, "epochs": 30, "train_seconds": 412.3}


def config(k: int = 7, domain: str = "notmnist", **provenance) -> tuple[PriorConfig, dict]:
    """(config, provenance), the first two arguments of render_card."""
    arch = {7: ("dwp-vae-7x7", 2), 5: ("dwp-vae-5x5", 4), 3: ("dwp-vae-3x3", 2)}[k]
    return PriorConfig(kernel_size=k, z_dim=arch[1], architecture=arch[0], domain=domain), provenance


def test_metadata_parses_with_library_tags_paper_and_metrics():
    cfg = config(7, dataset="notmnist-style", fonts=[f"Font {i}" for i in range(300)], norm_threshold=0.0123)
    card = ModelCard(render_card(*cfg, METRICS))
    meta = card.data.to_dict()
    assert meta["library_name"] == "dwp-hub"
    assert meta["license"] == "apache-2.0"
    assert {"deep-weight-prior", "kernel-7x7", "domain-notmnist"} <= set(meta["tags"])
    assert "datasets" not in meta  # rendered glyphs are not a Hub data set
    assert "https://arxiv.org/abs/1810.06943" in card.text
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == {"elbo": 101.25, "iwae-log-likelihood": 102.5}
    assert card.data.model_name == "dwp/notmnist-7x7"
    assert "300 items: Font 0" in card.text and "Font 299" not in card.text
    assert "| `norm_threshold` | 0.0123 |" in card.text
    assert "| kernels kept (norm above the threshold) | 2,345 |" in card.text


@pytest.mark.parametrize("k", [7, 5, 3])
def test_shipped_priors_get_their_hand_written_part(k):
    own = (CARDS_DIR / f"notmnist-{k}x{k}.md").read_text(encoding="utf-8").strip()
    text = render_card(*config(k), METRICS)
    assert own in text
    assert f'DWPrior.from_pretrained("dwp/notmnist-{k}x{k}")' in text


def test_mnist_domain_names_the_hub_dataset_and_repo_id_overrides_name():
    text = render_card(*config(5, domain="mnist", dataset="mnist-5k"), {"heldout_elbo": 3.0}, repo_id="me/x")
    meta = ModelCard(text).data.to_dict()
    assert meta["datasets"] == ["ylecun/mnist"]
    assert 'from_pretrained("me/x")' in text
    assert "About this prior" not in text  # no cards/x.md


def test_non_finite_metric_is_refused():
    with pytest.raises(ValueError, match="heldout_elbo"):
        render_card(*config(), {"heldout_elbo": math.nan})


def test_baselines_that_beat_the_vae_are_said_to():
    metrics = {"heldout_iwae_loglik": 77.4, "heldout_fullcov_gaussian_loglik": 82.9,
               "heldout_isotropic_gaussian_loglik": 66.6}
    text = render_card(*config(), metrics)
    assert ("IWAE log-likelihood (77.4) is **below** the 82.9 of a full-covariance Gaussian" in text
            and "above the 66.6 of an isotropic Gaussian" in text and "not the best density model" in text)
    better = render_card(*config(), {**metrics, "heldout_iwae_loglik": 90.0})
    assert "**below**" not in better and "not the best" not in better
