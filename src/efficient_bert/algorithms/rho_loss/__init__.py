"""RHO-loss (Mindermann et al. 2022) for masked-language modelling, as a Composer algorithm.

The method's README (paper, schedule, example) is beside this file."""

from efficient_bert.algorithms.rho_loss.rho_loss import (IrreducibleLosses, RHOLoss, apply_rho_loss,
                                                         extract_irreducible_losses)

__all__ = ["IrreducibleLosses", "RHOLoss", "apply_rho_loss", "extract_irreducible_losses"]
