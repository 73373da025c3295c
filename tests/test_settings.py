"""DallmiSettings: the one definition of the training settings, its checks and its registry."""

import dataclasses
import math
from typing import Any, Dict

import pytest
from spacy.language import Language
from spacy.util import Config, registry
from thinc.api import ConfigValidationError

from spacy_dallmi.settings import (
    LOSS_FORMS,
    MIXUP_LOCATIONS,
    NEGATIVE_WEIGHTINGS,
    OBJECTIVES,
    POSITIVE_TERMS,
    SETTING_NAMES,
    DallmiSettings,
)

from .util import make_nlp

FIELDS = dataclasses.fields(DallmiSettings)


def settings_block(**values: Any) -> Config:
    """A ``[settings]`` config block naming the registered dataclass, with ``values``."""
    config = Config().from_str('[settings]\n@misc = "spacy_dallmi.DallmiSettings.v1"\n')
    config["settings"].update(values)
    return config


def test_every_field_has_a_default_and_the_defaults_are_valid() -> None:
    for field in FIELDS:
        assert field.default is not dataclasses.MISSING, field.name
        assert field.default_factory is dataclasses.MISSING, field.name
    defaults = DallmiSettings()
    assert SETTING_NAMES == tuple(field.name for field in FIELDS)
    assert defaults.objective in OBJECTIVES and defaults.loss_form in LOSS_FORMS
    assert defaults.positive_term in POSITIVE_TERMS
    assert defaults.mixup_location in MIXUP_LOCATIONS
    assert defaults.negative_weighting in NEGATIVE_WEIGHTINGS


@pytest.mark.parametrize(
    "name,value",
    [
        ("objective", "ranking"),
        ("loss_form", "l2"),
        ("positive_term", "max"),
        ("mixup_location", "pixels"),
        ("negative_weighting", "wean"),
        ("mixup_alpha", 0.0),
        ("mixup_beta", -1.0),
        ("mixup_lambda", -0.1),
        ("mixup_lambda", math.nan),
        ("mixup_warmup_steps", -1),
        ("mixup_warmup_steps", 2.5),
        ("mixup_warmup_steps", True),
        ("mixup_pairs", 0),
        ("mixup_pairs", True),
        ("label_smoothing", 0.5),
        ("label_smoothing", -0.1),
        ("teacher_refresh_steps", -1),
        ("teacher_refresh_steps", 1.5),
        ("large_loss_rejection", 1.0),
        ("large_loss_rejection", -0.1),
        ("selection_guard", "cats_macro_f"),
        ("teacher_target", "teacher"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_setting(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        DallmiSettings(**{name: value})


def test_l2_positive_term_needs_the_norm_form() -> None:
    DallmiSettings(positive_term="l2", loss_form="norm")
    with pytest.raises(ValueError, match="positive_term = 'l2'.*loss_form = 'norm'"):
        DallmiSettings(positive_term="l2", loss_form="log")


def test_large_loss_rejection_needs_the_bce_objective() -> None:
    DallmiSettings(objective="bce", large_loss_rejection=0.1)
    with pytest.raises(ValueError, match="large_loss_rejection.*objective = 'dallmi'"):
        DallmiSettings(objective="dallmi", large_loss_rejection=0.1)


def test_teacher_refresh_needs_a_teacher() -> None:
    DallmiSettings(teacher_weight=0.5, teacher_refresh_steps=10)
    with pytest.raises(ValueError, match="teacher_refresh_steps.*teacher_weight > 0"):
        DallmiSettings(teacher_refresh_steps=10)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DallmiSettings().mixup_lambda = 2.0  # type: ignore[misc]


def test_resolves_from_a_config_and_fills_the_dataclass_defaults() -> None:
    config = settings_block(objective="dallmi", mixup_pairs=2)
    assert registry.resolve(config)["settings"] == DallmiSettings(objective="dallmi", mixup_pairs=2)
    filled = registry.fill(config)["settings"]
    expected: Dict[str, Any] = {field.name: field.default for field in FIELDS}
    expected.update(objective="dallmi", mixup_pairs=2)
    assert {key: value for key, value in filled.items() if key != "@misc"} == expected


@pytest.mark.parametrize(
    "values,named",
    [
        ({"seed": "abc"}, "seed"),
        ({"mixup": "maybe"}, "mixup"),
        ({"mixup_pairs": 2.5}, "mixup_pairs"),
        ({"mixup_lamda": 1.0}, "mixup_lamda"),
        ({"mixup_lambda": -1.0}, "mixup_lambda"),
        ({"blend_alphas": [0.5, 1.5]}, "blend_alphas"),
        ({"blend_alphas": [-0.1]}, "blend_alphas"),
        ({"blend_alphas": 0.5}, "blend_alphas"),
    ],
)
def test_a_bad_config_block_names_the_setting(values: Dict[str, Any], named: str) -> None:
    with pytest.raises((ConfigValidationError, ValueError), match=named):
        registry.resolve(settings_block(**values))


def test_the_component_takes_its_settings_flat_with_the_dataclass_defaults(tiny_bert: str) -> None:
    import spacy_dallmi.component  # noqa: F401  (registers the factory, whatever ran before)

    defaults = Language.get_factory_meta("dallmi_textcat").default_config
    assert {name: defaults[name] for name in SETTING_NAMES} == DallmiSettings().to_dict()
    nlp = make_nlp(tiny_bert, objective="dallmi", mixup_lambda=0.5)
    block = nlp.config["components"]["textcat"]
    assert "settings" not in block
    expected = DallmiSettings(objective="dallmi", mixup_lambda=0.5)
    assert nlp.get_pipe("textcat").settings == expected
    # as the saved config.cfg has them (a tuple default is written as a list)
    saved = Config(nlp.config).to_str()
    block = Config().from_str(saved)["components"]["textcat"]
    assert {name: block[name] for name in SETTING_NAMES} == expected.to_dict()


def test_from_dict_ignores_other_keys_and_round_trips() -> None:
    settings = DallmiSettings(objective="dallmi", seed=4, mixup_warmup_steps=10)
    cfg = {"labels": ["a"], "threshold": 0.5, **settings.to_dict()}
    assert DallmiSettings.from_dict(cfg) == settings
    assert DallmiSettings.from_dict({"seed": 3}) == DallmiSettings(seed=3)


def test_mixup_weight_warms_up_linearly_then_stays() -> None:
    warm = DallmiSettings(mixup_lambda=0.6, mixup_warmup_steps=3)
    weights = [warm.mixup_weight(step) for step in range(0, 6)]
    assert weights == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.6, 0.6])
    assert [DallmiSettings(mixup_lambda=0.6).mixup_weight(s) for s in (1, 2)] == [0.6, 0.6]
    off = DallmiSettings(mixup_lambda=0.6, mixup_warmup_steps=3, mixup=False)
    assert [off.mixup_weight(step) for step in range(1, 5)] == [0.0] * 4
