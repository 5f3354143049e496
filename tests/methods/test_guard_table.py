"""The one table of relabel guards (``relabscope.methods.guards``) that the trainer, the
sweep, RunCapture, the plots and the dashboard derive from: complete, in one order, one
floor formula, and the canonical spelling a round trip of a run's settings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from relabscope.cli import main
from relabscope.methods.guards import (GUARD_SETTINGS, GUARDS, NONE, SPELLING_ORDER, floor_size, guard_settings,
                                       guard_value, guards_on, parse_guard)
from relabscope.methods.settings import RelabelGuardSettings
from relabscope.training.guards import GUARD_ORDER, build_guards, floor_sizes


def test_the_table_names_every_guard_setting_once() -> None:
    assert sorted(g.setting for g in GUARDS) == sorted(f.name for f in dataclasses.fields(RelabelGuardSettings))
    assert sorted(SPELLING_ORDER) == sorted(g.name for g in GUARDS) == sorted(GUARD_SETTINGS)
    options = {opt for p in main.commands["train"].params for opt in p.opts}
    assert all(g.flag in options for g in GUARDS)


def test_the_trainer_builds_the_guards_in_the_tables_order() -> None:
    settings = RelabelGuardSettings(relabel_floor=0.5, relabel_hysteresis=2, relabel_agree=True)
    built = build_guards(settings, torch.tensor([0, 0, 1, 1]), 2, embed_dim=3)
    assert built is not None and built.names == GUARD_ORDER == tuple(g.name for g in GUARDS)
    assert guards_on(settings) == list(GUARD_ORDER)
    assert guards_on({"relabel_floor": 0.5}) == ["floor"] and guards_on(RelabelGuardSettings()) == []


@pytest.mark.parametrize("value", ["none", "floor=0.5", "hysteresis=2+agree", "floor=0.25+hysteresis=1+agree"])
def test_a_runs_settings_spell_back_to_their_value(value: str) -> None:
    settings = RelabelGuardSettings(**guard_settings(value))
    assert guard_value(settings) == value == parse_guard(value)
    assert guard_value(dataclasses.asdict(settings)) == value
    assert (value == NONE) == (guards_on(settings) == [])


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 1.0])
def test_one_floor_formula_for_numbers_arrays_and_tensors(fraction: float) -> None:
    given = np.arange(0, 40)
    expected = [int(np.ceil(round(g * fraction, 9))) for g in given]  # 0.3 x 10 is 3, not 4
    assert floor_size(given.astype(float), fraction).astype(int).tolist() == expected
    assert floor_sizes(torch.from_numpy(given), fraction).tolist() == expected
    assert [int(floor_size(float(g), fraction)) for g in given] == expected
