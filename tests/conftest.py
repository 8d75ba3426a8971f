import pytest

from stages.data import prepare_table, toy
from stages.params import DataParams, TrainParams


@pytest.fixture
def lesson_params() -> TrainParams:
    """The lesson's settings, as in params.yaml."""
    return TrainParams(epochs=1000, lr=0.1, seed=1, device="cpu", log_every=100, double_softmax=False)


@pytest.fixture
def toy_data():
    return prepare_table(toy(), DataParams(source="toy"))
