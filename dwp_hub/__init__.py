"""dwp-hub: pretrained deep weight priors (Atanov et al., ICLR 2019) for convolutional networks.

The names below are imported on first use (PEP 562), so that ``import dwp_hub`` and the ``dwp-hub`` command
line start without loading torch until they need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"  # the one version source (pyproject.toml reads it)

_EXPORTS = {
    "bayes_conv": ["BayesConv2d", "bayes_mode", "kl"],
    "to_bayesian": ["BayesianizeReport", "LayerReport", "bayesianize"],
    "dwp_bound": ["DWPBound"],
    "errors": ["DWPError", "NotCachedError", "PriorFormatError", "PriorNotFoundError", "PublishError"],
    "gap": ["LayerGap", "approximation_gap"],
    "hub": ["PriorInfo", "PriorSource", "list_priors"],
    "init": ["InitReport", "init_from_prior"],
    "prior": ["DWPrior"],
    "prior_folder": ["PriorConfig"],
    "names": ["PriorName"],
    "prior_spec": ["resolve_priors"],
    "publish": ["PushResult", "push_folder"],
    "vi": ["elbo_loss", "evaluate", "expected_calibration_error", "parameter_groups", "predict_proba"],
    "weight_priors": ["LogUniformPrior", "MultivariateGaussianPrior", "NormalPrior", "SubsampledKL", "WeightPrior"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .bayes_conv import BayesConv2d, bayes_mode, kl
    from .to_bayesian import BayesianizeReport, LayerReport, bayesianize
    from .dwp_bound import DWPBound
    from .errors import DWPError, NotCachedError, PriorFormatError, PriorNotFoundError, PublishError
    from .gap import LayerGap, approximation_gap
    from .hub import PriorInfo, PriorSource, list_priors
    from .init import InitReport, init_from_prior
    from .prior import DWPrior
    from .prior_folder import PriorConfig
    from .names import PriorName
    from .prior_spec import resolve_priors
    from .publish import PushResult, push_folder
    from .vi import elbo_loss, evaluate, expected_calibration_error, parameter_groups, predict_proba
    from .weight_priors import LogUniformPrior, MultivariateGaussianPrior, NormalPrior, SubsampledKL, WeightPrior
