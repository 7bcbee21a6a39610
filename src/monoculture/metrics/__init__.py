"""The metrics of METRICS.md: similarity, voices, partition, lexical, separability, lineage.

Start from :func:`measure_all` with a :class:`ResponseSet`; the modules below it hold one
family of metrics each and can be used on their own.
"""

from .partition import calibrate_tau, partition_responses
from .pipeline import MeasureResult, measure_all
from .responses import CellIndex, MetricsInputError, ResponseSet, calibrate, index_cells
from .stats import Estimate, bootstrap_mean, paired_bootstrap
from .vendi import vendi_pools, vendi_score

__all__ = [
    "CellIndex",
    "Estimate",
    "MeasureResult",
    "MetricsInputError",
    "ResponseSet",
    "bootstrap_mean",
    "calibrate",
    "calibrate_tau",
    "index_cells",
    "measure_all",
    "paired_bootstrap",
    "partition_responses",
    "vendi_pools",
    "vendi_score",
]
