"""The minimal model card written when a prior is saved without one of its own.

Published priors carry a full card rendered from the template in the repository's ``cards/``;
this one only makes a bare ``save_pretrained`` folder complete and valid.
"""

from __future__ import annotations

from .config import PriorConfig

PAPER_ARXIV = "1810.06943"


def card_metadata(config: PriorConfig) -> dict:
    """YAML front matter the Hub understands, derived from the config."""
    k = config.kernel_size
    return {
        "library_name": "dwp-hub",
        "license": "apache-2.0",
        "tags": ["deep-weight-prior", f"kernel-{k}x{k}", f"domain-{config.domain}", f"arxiv:{PAPER_ARXIV}"],
    }


def default_card(config: PriorConfig) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    k = config.kernel_size
    meta = card_metadata(config)
    data = ModelCardData(library_name=meta["library_name"], license=meta["license"], tags=meta["tags"])
    body = (
        f"# Deep weight prior, {k}x{k} kernels, domain `{config.domain}`\n\n"
        f"A kernel VAE (architecture `{config.architecture}`, z_dim={config.z_dim}) used as a prior over "
        f"{k}x{k} convolution kernels, after [The Deep Weight Prior](https://arxiv.org/abs/{PAPER_ARXIV}).\n\n"
        "```python\nfrom dwp_hub import DWPrior\nprior = DWPrior.from_pretrained(\"PATH_OR_NAME\")\n"
        "kernels = prior.sample(64)\n```\n\n"
        f"Provenance recorded in `config.json`: {config.provenance or 'none'}.\n"
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))
