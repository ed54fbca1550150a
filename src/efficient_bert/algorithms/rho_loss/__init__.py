"""RHO-loss (Mindermann et al. 2022) for masked-language modelling, as a Composer algorithm, and
``efficient-bert extract-il`` (:mod:`.extract_il`), its irreducible losses. The names below import on
first use.

The method's README (paper, schedule, example) is beside this file."""

from efficient_bert.lazy import lazy_exports

_EXPORTS = {name: "efficient_bert.algorithms.rho_loss.rho_loss"
            for name in ("IrreducibleLosses", "RHOLoss", "apply_rho_loss", "extract_irreducible_losses")}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
