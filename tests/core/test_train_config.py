"""TrainConfig fields that were withdrawn: old checkpoints and YAML files at the old defaults still load,
anything else is refused with a ConfigError naming the field (no silently ignored option)."""
from __future__ import annotations

import pytest

from spkid.errors import ConfigError
from spkid.training.checkpoints import check_compatible
from spkid.training.config import TrainConfig


def test_withdrawn_noise_fields_at_their_defaults_are_dropped():
    old = {**TrainConfig(epochs=3).to_dict(), "noise_snr": None, "noise_copies": 0}
    assert TrainConfig.from_dict(old) == TrainConfig(epochs=3)
    assert "noise_copies" not in TrainConfig.field_names() and "noise_snr" not in TrainConfig.field_names()


@pytest.mark.parametrize("field, value", [("noise_copies", 2), ("noise_snr", [5.0, 20.0])])
def test_withdrawn_noise_fields_in_use_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"{field} was withdrawn"):
        TrainConfig.from_dict({field: value})


def test_a_run_from_before_the_withdrawal_resumes():
    config = TrainConfig(epochs=3).to_dict()
    meta = {"train_config": {**config, "noise_snr": None, "noise_copies": 0}}
    check_compatible(meta, {"train_config": config}, "run/checkpoints/last.json")  # no error
