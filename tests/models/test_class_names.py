"""``ClassifierConfig.class_names``: validated, round-trips through save/load, no weight of its own."""

import pytest

import act_zoo
from act_zoo.models import ACTClassifier, ClassifierConfig

TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "encoder_dims": 32, "group_size": 8, "num_group": 8, "npoints": 64}


def test_class_names_round_trip_and_add_no_weights(tmp_path):
    model = ACTClassifier(ClassifierConfig(**TINY, cls_dim=3, class_names=["mug", "bowl", "can"]))
    assert model.class_names == ["mug", "bowl", "can"]
    assert model.config.class_names == ("mug", "bowl", "can")  # a list is stored as a tuple (hashable)
    plain = ACTClassifier(ClassifierConfig(**TINY, cls_dim=3))
    assert plain.class_names is None
    assert model.state_dict().keys() == plain.state_dict().keys()
    model.save_pretrained(tmp_path / "m")
    loaded = act_zoo.from_pretrained(tmp_path / "m")
    assert loaded.class_names == ["mug", "bowl", "can"] and loaded.config == model.config


@pytest.mark.parametrize("names, match", [
    (("a", "b"), "2 names for cls_dim=3"),
    (("a", "b", "a"), "repeated: \\['a'\\]"),
    (("a", "", "c"), "non-empty strings"),
    ("abc", "non-empty strings"),
])
def test_bad_class_names_are_refused(names, match):
    with pytest.raises(ValueError, match=match):
        ClassifierConfig(**TINY, cls_dim=3, class_names=names)
