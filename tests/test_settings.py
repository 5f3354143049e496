"""The setting specs and what is derived from them: TrainConfig, validation, the CLI
options, method relevance, resume rules and docs/settings.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from relabscope import config
from relabscope.config import HOW_TO_RUN, INTRODUCED, RESUMABLE, SPECS, TrainConfig, readers, resolve
from relabscope.errors import RelabscopeError
from relabscope.methods import METHODS
from relabscope.settings import Spec, coerce, setting, specs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_docs_table_is_up_to_date() -> None:
    assert DOCS.read_text() == config.settings_markdown(), \
        "docs/settings.md is stale: python -m relabscope.config > docs/settings.md"


def test_every_setting_has_a_spec_and_help() -> None:
    assert set(SPECS) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert all(s.setting.help for s in SPECS.values())


def test_derived_tables_follow_the_specs() -> None:
    assert readers("delta") == {"scn", "scn-c"} and readers("gamma") == {m for m in METHODS if m.endswith("-c")}
    assert readers("dmue_center_ramp") == {"dmue-c"} and readers("lr") is None
    assert INTRODUCED == {"preset": "reference", "backbone": "resnet18", "center_update": "wen", "dmue_train_neck": True,
                          "dmue_mask_absent": False,
                          "dmue_center_ramp": False, "dmue_center_on": "feature",
                          "relabel_floor": 0.0, "relabel_hysteresis": 0, "relabel_agree": False, "corrections": None,
                          "corrections_mismatch": "refuse", "canaries": 0.0, "canary_matrix": None}
    relabelling = {m for m, entry in METHODS.items() if entry.relabels}
    assert relabelling == {"scn", "scn-c"}
    assert readers("relabel_floor") == readers("relabel_agree") == readers("relabel_epoch") == relabelling
    assert HOW_TO_RUN == {"device", "workers", "cache_gb", "keep_optimizer", "out"}
    assert RESUMABLE == HOW_TO_RUN | {"epochs"}


def test_a_new_settings_class_needs_no_other_edit() -> None:
    """A method's settings declared the usual way, with a type the old coercion table did
    not know (list[str]): its spec validates and coerces by its annotation."""

    @dataclasses.dataclass
    class Extra:
        tags: list[str] = setting(factory=list, help="free-form tags")
        scale: float = setting(1, help="a scale")

    found = specs(Extra)
    assert coerce(found["tags"], ("a", "b")) == ["a", "b"]
    with pytest.raises(ValueError, match="must be a list of strings"):
        coerce(found["tags"], ["a", 3])
    assert coerce(found["scale"], 2) == 2.0 and isinstance(coerce(found["scale"], 2), float)
    with pytest.raises(ValueError, match="must be float, got True"):
        coerce(found["scale"], True)


def test_a_field_without_a_spec_is_refused() -> None:
    @dataclasses.dataclass
    class Bare:
        x: int = 1

    with pytest.raises(TypeError, match="not declared with relabscope.settings.setting"):
        specs(Bare)


@pytest.mark.parametrize("values, message", [
    ({"noise": 1.5}, "noise must be in [0, 1), got 1.5"),
    ({"noise": float("nan")}, "noise must be in [0, 1)"),
    ({"batch_size": 1}, "batch_size must be at least 2 (batch normalisation needs two samples)"),
    ({"epochs": 0}, "epochs must be a positive whole number, got 0"),
    ({"epochs": 2.5}, "epochs must be int, got 2.5"),
    ({"lr": 0}, "lr must be positive"),
    ({"gamma": -1}, "gamma must be >= 0"),
    ({"rr_beta": 1.0}, "rr_beta must be in (0, 1)"),
    ({"device": "tpu"}, "device must be one of auto, cpu, cuda, got 'tpu'"),
    ({"method": "scn-x"}, "unknown method 'scn-x'; choose one of baseline"),
    ({"dataset": "mnist"}, "unknown dataset 'mnist'; choose one of synthetic"),
    ({"lr_milestones": [5, 3]}, "lr_milestones must be increasing positive epoch counts, got [5, 3]"),
    ({"lr_milestones": [5, "x"]}, "lr_milestones must be a list of whole numbers"),
    ({"limit": 1}, "limit must be at least 2, got 1"),
    ({"workers": -1}, "workers must be >= 0"),
    ({"rr": "yes"}, "rr must be bool, got 'yes'"),
    ({"relabel_floor": 1.5}, "relabel_floor must be in [0, 1], got 1.5"),
    ({"relabel_hysteresis": -1}, "relabel_hysteresis must be >= 0"),
    ({"noise": 0.1, "noise_file": "n.txt"}, "give one of noise, noise_file and noise_matrix, not several"),
    ({"noise": 0.1, "noise_matrix": "m.csv"}, "give one of noise, noise_file and noise_matrix, not several"),
    ({"noise_file": "n.txt", "noise_matrix": "m.csv"}, "give one of noise, noise_file and noise_matrix"),
    ({"colour": 1}, "unknown setting 'colour'"),
])
def test_validation_names_the_setting_in_one_line(values, message) -> None:
    with pytest.raises(RelabscopeError) as err:
        resolve(values)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_presets_apply_in_order() -> None:
    assert resolve({"method": "rul"}).lr == 2e-4  # the method's preset
    assert resolve({"method": "dmue"}).lr == 1e-3  # synthetic's per-method preset wins over DMUE's
    assert resolve({"method": "dmue", "dataset": "rafdb"}).lr == 0.01
    assert resolve({"method": "rul", "lr": 0.5}).lr == 0.5  # an option wins over both


def test_cli_options_are_made_from_the_specs() -> None:
    from relabscope.cli import setting_option

    decls, attrs = setting_option(SPECS["relabel_scope"])
    assert decls == ("--relabel-scope",) and list(attrs["type"].choices) == ["all", "low"]
    assert setting_option(SPECS["rr"])[0] == ("--rr/--no-rr",)
    assert setting_option(SPECS["keep_optimizer"])[0] == ("--keep-optimizer/--drop-optimizer",)
    assert setting_option(SPECS["relabel_agree"])[0] == ("--relabel-agree/--no-relabel-agree",)
    assert setting_option(SPECS["relabel_floor"])[0] == ("--relabel-floor",)
    assert setting_option(SPECS["lr_milestones"])[1]["callback"](None, None, "3,7") == [3, 7]
    assert isinstance(SPECS["noise"], Spec) and setting_option(SPECS["noise"])[1]["type"] is float
