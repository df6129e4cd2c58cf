"""Unlearning methods. Importing this package registers each one in `cir.registry.METHODS`."""

from cir.methods import (  # noqa: F401  (imported to register)
    cir,
    circuit_breakers,
    grad_diff,
    mlp_breaking,
    npo,
    repselect,
    rmu,
    sam_grad_diff,
    sam_npo,
    simnpo,
)
