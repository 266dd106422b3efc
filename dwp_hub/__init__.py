"""dwp-hub: pretrained deep weight priors (Atanov et al., ICLR 2019) for convolutional networks."""

from .config import PriorConfig
from .errors import DWPError, PriorFormatError, PriorNotFoundError
from .prior import DWPrior
from .resolve import PriorInfo, list_priors

__version__ = "0.1.0"

__all__ = [
    "DWPError",
    "DWPrior",
    "PriorConfig",
    "PriorFormatError",
    "PriorInfo",
    "PriorNotFoundError",
    "list_priors",
]
