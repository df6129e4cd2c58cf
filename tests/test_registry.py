from dataclasses import dataclass

import pytest

from cir.errors import ConfigError
from cir.registry import ATTACKS, METHODS, Registry


@dataclass
class ScaleConfig:
    factor: float = 2.0


def make_registry():
    registry = Registry("method")

    @registry.register("grad_diff", ScaleConfig, "gradient difference")
    class GradDiff:
        def __init__(self, config):
            self.config = config

    @registry.register("npo", ScaleConfig, "negative preference optimization")
    def npo(config):
        return ("npo", config.factor)

    return registry, GradDiff


def test_register_get_names_and_build():
    registry, grad_diff = make_registry()
    assert registry.names() == ["grad_diff", "npo"]
    entry = registry.get("grad_diff")
    assert entry.name == "grad_diff"
    assert entry.build is grad_diff  # the decorator returns the class unchanged
    assert entry.config_class is ScaleConfig
    assert entry.description == "gradient difference"
    built = registry.build("grad_diff", ScaleConfig(3.0))
    assert isinstance(built, grad_diff) and built.config.factor == 3.0
    assert registry.build("npo", ScaleConfig()) == ("npo", 2.0)


def test_unknown_name_lists_known_names_and_suggests():
    registry, _ = make_registry()
    with pytest.raises(
        ConfigError, match=r"unknown method 'grad_dif'\. Did you mean 'grad_diff'\?"
    ) as caught:
        registry.get("grad_dif")
    assert "Known: grad_diff, npo" in str(caught.value)
    with pytest.raises(ConfigError, match=r"unknown method 'zzz'\. Known: grad_diff, npo$"):
        registry.build("zzz", ScaleConfig())


def test_duplicate_registration_is_a_programming_error():
    registry, _ = make_registry()
    with pytest.raises(ValueError, match="method 'npo' is registered twice"):
        registry.register("npo", ScaleConfig, "again")(lambda config: None)
    assert registry.get("npo").description == "negative preference optimization"


def test_every_component_is_registered_under_its_file_name_with_the_config_of_its_file():
    """A method or an attack is one file: its registry name is the file's, its config class lives there."""
    import importlib

    import cir.attacks
    import cir.methods  # noqa: F401  (both register their components)

    for registry, package in ((METHODS, "cir.methods"), (ATTACKS, "cir.attacks")):
        assert registry.names()  # the imports registered something
        for name in registry.names():
            entry = registry.get(name)
            module = importlib.import_module(f"{package}.{name}")  # fails for a name that is no file
            assert entry.config_class.__module__ == module.__name__, name
            assert module.Config is entry.config_class, name


def test_every_attack_says_what_its_steps_are():
    """The bench plot labels its attack axis from the attack itself, so a new attack must declare it."""
    for name in ATTACKS.names():
        axis = ATTACKS.get(name).build.trajectory_axis
        assert isinstance(axis, str) and axis.startswith("attack"), name


def test_a_config_of_another_class_is_refused_at_build():
    import cir.methods  # noqa: F401  (registers the methods)
    from cir.methods.grad_diff import Config as GradDiffConfig
    from cir.methods.npo import Config as NPOConfig

    with pytest.raises(ConfigError, match=r"method 'npo' is configured by cir\.methods\.npo\.Config"):
        METHODS.build("npo", GradDiffConfig())
    assert METHODS.build("npo", NPOConfig()).config == NPOConfig()
