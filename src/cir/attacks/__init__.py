"""Relearning attacks. Importing this package registers each one in `cir.registry.ATTACKS`."""

from cir.attacks import (  # noqa: F401  (imported to register)
    benign_relearn,
    few_shot,
    finetune,
    lora,
    other_data,
    paper_finetune,
    quantize,
)
