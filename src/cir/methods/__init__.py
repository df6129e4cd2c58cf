"""Unlearning methods. Importing this package registers each one in `cir.registry.METHODS`."""

from cir.methods import cir, mlp_breaking  # noqa: F401  (imported to register)
