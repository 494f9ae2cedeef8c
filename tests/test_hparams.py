"""Presets: defaults, JSON sections, overrides, validation, exact round trip."""
from __future__ import annotations

import json
import os

import pytest

from tacowave.hparams import (PRESETS_DIR, SECTIONS, HParams, HParamsError, audio_sections_differ,
                              describe_audio_differences, load_hparams, parse_overrides)

SHIPPED = ["ljspeech", "cmu_arctic", "jsut", "thchs30", "demo"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_preset_loads_and_round_trips(name):
    hp = load_hparams(name)
    again = HParams.from_dict(json.loads(hp.to_json()))
    assert again == hp and again.to_dict() == hp.to_dict()
    product = 1
    for s in hp.wavenet.upsample_scales:
        product *= s
    assert product == hp.audio.hop_size


def test_shipped_presets_have_the_documented_sample_rates():
    rates = {name: load_hparams(name).audio.sample_rate for name in SHIPPED}
    assert rates == {"ljspeech": 22050, "cmu_arctic": 16000, "jsut": 24000, "thchs30": 16000,
                     "demo": 16000}
    with open(os.path.join(PRESETS_DIR, "jsut.json")) as f:
        assert json.load(f)["audio"]["sample_rate"] == 24000


def test_preset_overrides_defaults_by_section_and_leaves_the_rest():
    default = HParams()
    hp = load_hparams("demo")
    assert hp.wavenet.layers == 12 and default.wavenet.layers == 24
    assert hp.wavenet.kernel_size == default.wavenet.kernel_size
    assert hp.train_tacotron2.guided_attention_weight == 50.0


def test_override_string_parses_every_type():
    hp = load_hparams("demo", "wavenet.layers=6,wavenet.stacks=3,audio.fmin=55,"
                              "train_tacotron2.amp=bf16,audio.trim_silence=false,"
                              "wavenet.upsample_scales=[10, 20],audio.fmax=null,"
                              "train_tacotron2.lr_schedule=none,train_wavenet.amp=none")
    assert hp.wavenet.layers == 6 and hp.wavenet.stacks == 3
    assert hp.audio.fmin == 55.0 and isinstance(hp.audio.fmin, float)
    assert hp.train_tacotron2.amp == "bf16" and hp.train_wavenet.amp == "none"
    assert hp.train_tacotron2.lr_schedule == "none"
    assert load_hparams(None, "audio.fmax=None").audio.fmax is None
    assert hp.audio.trim_silence is False
    assert hp.wavenet.upsample_scales == [10, 20]
    assert hp.audio.fmax is None
    assert parse_overrides("audio.x=1, audio.y=[1,2] ,") == {"audio": {"x": 1, "y": [1, 2]}}


def test_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(HParamsError) as e:
        load_hparams("demo", "wavenet.layerz=3")
    msg = str(e.value)
    assert "wavenet.layerz" in msg and "residual_channels" in msg and "layers" in msg


def test_unknown_section_is_an_error_listing_sections():
    with pytest.raises(HParamsError, match="valid sections: audio"):
        HParams.from_dict({"audoi": {"sample_rate": 16000}})
    with pytest.raises(HParamsError, match="unknown section 'vocoder'"):
        load_hparams(None, "vocoder.layers=3")


@pytest.mark.parametrize("spec, key", [
    ("wavenet.layers=2.5", "wavenet.layers"),
    ("wavenet.layers=true", "wavenet.layers"),
    ("audio.trim_silence=1", "audio.trim_silence"),
    ("audio.window=3", "audio.window"),
    ("wavenet.upsample_scales=4", "wavenet.upsample_scales"),
])
def test_wrong_types_are_errors_naming_the_key(spec, key):
    with pytest.raises(HParamsError, match=key.replace(".", r"\.")):
        load_hparams(None, spec)


def test_bad_preset_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HParamsError, match="bad.json"):
        load_hparams(str(bad))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"audio": {"sample_rate": "16k"}}))
    with pytest.raises(HParamsError, match=r"wrong\.json.*audio\.sample_rate"):
        load_hparams(str(wrong))
    with pytest.raises(HParamsError, match="shipped presets: .*ljspeech"):
        load_hparams("no_such_preset")


def test_cross_field_validation():
    with pytest.raises(HParamsError, match="upsample_scales"):
        load_hparams("ljspeech", "audio.hop_size=200,audio.win_size=800")
    with pytest.raises(HParamsError, match="fmax"):
        load_hparams("cmu_arctic", "audio.fmax=9000")
    with pytest.raises(HParamsError, match="cin_channels"):
        load_hparams("demo", "audio.num_mels=40")
    with pytest.raises(HParamsError, match="n_frames_per_step"):
        load_hparams("demo", "tacotron2.n_frames_per_step=4")


def test_audio_sections_differ_names_feature_keys_only():
    a = load_hparams("cmu_arctic").to_dict()["audio"]
    b = dict(a, fmin=0.0, griffin_lim_iters=5, max_duration_s=3.0)
    assert audio_sections_differ(a, b) == ["fmin"]
    assert audio_sections_differ(a, a) == []
    assert describe_audio_differences(a, b, "A", "B") == "audio.fmin = 80.0 in A but 0.0 in B"
    assert describe_audio_differences(a, a, "A", "B") == ""


def test_every_section_has_a_default():
    hp = HParams()
    assert set(hp.to_dict()) == set(SECTIONS)
