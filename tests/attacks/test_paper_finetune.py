"""The paper's attack preset: the paper's settings, and every layer's MLP really trained by SGD."""

import torch

import tiny
from cir.attacks.finetune import Config as FinetuneConfig
from cir.attacks.finetune import Finetune
from cir.attacks.paper_finetune import Config, PaperFinetune
from cir.modules import mlp_modules

TRAIN, EVAL = list(tiny.FACTS[:2]), list(tiny.FACTS[2:])


def test_its_defaults_are_the_papers_settings():
    config = Config()
    assert (config.optimizer, config.lr, config.epochs, config.batch_size, config.trained) == (
        "sgd",
        1e-5,
        100,
        32,
        "mlp",
    )


def test_it_trains_every_layers_mlp_and_nothing_else_as_finetune_with_sgd_does():
    model = tiny.model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = PaperFinetune(Config(epochs=2, lr=1e-2)).run(model, tiny.tokenizer(), TRAIN, EVAL, False)
    mlp = {f"{m.name}.weight" for m in mlp_modules(model)}
    assert set(result.trained_parameters) == mlp and len(mlp) == 3 * model.config.num_hidden_layers
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed == mlp
    same = Finetune(FinetuneConfig(optimizer="sgd", lr=1e-2, epochs=2, batch_size=32)).run(
        tiny.model(), tiny.tokenizer(), TRAIN, EVAL, False
    )
    assert [e.facts for e in result.history] == [e.facts for e in same.history]
