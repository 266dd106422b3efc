"""dwp-hub: pretrained deep weight priors (Atanov et al., ICLR 2019) for convolutional networks."""

from .bayes_conv import BayesConv2d, bayes_mode, kl
from .bayesianize import BayesianizeReport, LayerReport, bayesianize
from .config import PriorConfig
from .dwp_bound import DWPBound
from .errors import DWPError, PriorFormatError, PriorNotFoundError
from .gap import LayerGap, approximation_gap
from .init import InitReport, init_from_prior
from .prior import DWPrior
from .resolve import PriorInfo, list_priors
from .vi import elbo_loss, evaluate, expected_calibration_error, parameter_groups, predict_proba
from .weight_priors import LogUniformPrior, MultivariateGaussianPrior, NormalPrior, WeightPrior

__version__ = "0.1.0"

__all__ = [
    "BayesConv2d",
    "BayesianizeReport",
    "DWPBound",
    "LayerGap",
    "LayerReport",
    "LogUniformPrior",
    "MultivariateGaussianPrior",
    "NormalPrior",
    "WeightPrior",
    "approximation_gap",
    "bayes_mode",
    "bayesianize",
    "elbo_loss",
    "evaluate",
    "expected_calibration_error",
    "init_from_prior",
    "kl",
    "parameter_groups",
    "predict_proba",
    "DWPError",
    "DWPrior",
    "InitReport",
    "PriorConfig",
    "PriorFormatError",
    "PriorInfo",
    "PriorNotFoundError",
    "list_priors",
]
