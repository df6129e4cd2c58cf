import pytest
import torch

# Tiny test models gain nothing from threads, and several test processes on 2 cores would fight.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    # `gpu` tests need CUDA: on a machine without it they are skipped (CI deselects them anyway).
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    # Exit code 5 means no test was collected (e.g. a marker expression that deselects everything):
    # CI must fail loudly rather than pass on zero tests.
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("\nno tests were collected: failing the run (see tests/README.md for the markers)")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
