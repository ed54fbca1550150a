"""Progressive layer stacking (Gong et al. 2019) as a Composer algorithm.

The method's README (paper, schedule, example) is beside this file."""

from efficient_bert.algorithms.layer_stacking.layer_stacking import (LayerStacking, OPTIMIZER_STATES,
                                                                     apply_layer_stacking, check_optimizer_state,
                                                                     stacking_depths)

__all__ = ["LayerStacking", "OPTIMIZER_STATES", "apply_layer_stacking", "check_optimizer_state", "stacking_depths"]
