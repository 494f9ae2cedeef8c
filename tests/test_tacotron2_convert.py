"""NVIDIA/tacotron2 checkpoint import: name mapping, round trip, CLI, bad files.

The NVIDIA-layout state dict is written out here from their model.py / layers.py (names and
shapes), independently of tacotron2/convert_nvidia.py, at small sizes with random values.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

from tacowave.cli.convert import main as convert_main
from tacowave.hparams import PRESETS_DIR, HParams
from tacowave.text import get_frontend
from tacotron2.convert_nvidia import (NVIDIA_PRESET, nvidia_names, nvidia_to_tacowave, nvidia_symbols,
                                      tacowave_to_nvidia)
from tacotron2.model import build_tacotron2

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Their sizes, shrunk; n_symbols and n_mels stay theirs (148 symbols, 80 mels).
N_SYMBOLS, N_MELS = 148, 80
EMB, ENC, ATT_RNN, ATT, FILTERS, LOC_K, PRENET, DEC, POST = 16, 16, 24, 8, 4, 31, 12, 20, 16


def _bn(prefix: str, n: int) -> dict[str, tuple]:
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,), f"{prefix}.running_mean": (n,),
            f"{prefix}.running_var": (n,), f"{prefix}.num_batches_tracked": ()}


def nvidia_layout() -> dict[str, tuple]:
    """Every tensor of NVIDIA's Tacotron2 module (hparams as above), name -> shape."""
    shapes: dict[str, tuple] = {"embedding.weight": (N_SYMBOLS, EMB)}
    for i in range(3):  # Encoder: ConvNorm + BatchNorm1d in an nn.Sequential
        shapes[f"encoder.convolutions.{i}.0.conv.weight"] = (ENC, ENC, 5)
        shapes[f"encoder.convolutions.{i}.0.conv.bias"] = (ENC,)
        shapes.update(_bn(f"encoder.convolutions.{i}.1", ENC))
    for sfx in ("l0", "l0_reverse"):  # nn.LSTM(ENC, ENC / 2, bidirectional=True)
        shapes[f"encoder.lstm.weight_ih_{sfx}"] = (2 * ENC, ENC)
        shapes[f"encoder.lstm.weight_hh_{sfx}"] = (2 * ENC, ENC // 2)
        shapes[f"encoder.lstm.bias_ih_{sfx}"] = (2 * ENC,)
        shapes[f"encoder.lstm.bias_hh_{sfx}"] = (2 * ENC,)
    shapes["decoder.prenet.layers.0.linear_layer.weight"] = (PRENET, N_MELS)
    shapes["decoder.prenet.layers.1.linear_layer.weight"] = (PRENET, PRENET)
    for name, inp, hid in (("attention_rnn", PRENET + ENC, ATT_RNN), ("decoder_rnn", ATT_RNN + ENC, DEC)):
        shapes[f"decoder.{name}.weight_ih"] = (4 * hid, inp)
        shapes[f"decoder.{name}.weight_hh"] = (4 * hid, hid)
        shapes[f"decoder.{name}.bias_ih"] = (4 * hid,)
        shapes[f"decoder.{name}.bias_hh"] = (4 * hid,)
    a = "decoder.attention_layer"
    shapes[f"{a}.query_layer.linear_layer.weight"] = (ATT, ATT_RNN)
    shapes[f"{a}.memory_layer.linear_layer.weight"] = (ATT, ENC)
    shapes[f"{a}.v.linear_layer.weight"] = (1, ATT)
    shapes[f"{a}.location_layer.location_conv.conv.weight"] = (FILTERS, 2, LOC_K)
    shapes[f"{a}.location_layer.location_dense.linear_layer.weight"] = (ATT, FILTERS)
    shapes["decoder.linear_projection.linear_layer.weight"] = (N_MELS, DEC + ENC)
    shapes["decoder.linear_projection.linear_layer.bias"] = (N_MELS,)
    shapes["decoder.gate_layer.linear_layer.weight"] = (1, DEC + ENC)
    shapes["decoder.gate_layer.linear_layer.bias"] = (1,)
    for i, (cin, cout) in enumerate([(N_MELS, POST), (POST, POST), (POST, POST), (POST, POST), (POST, N_MELS)]):
        shapes[f"postnet.convolutions.{i}.0.conv.weight"] = (cout, cin, 5)
        shapes[f"postnet.convolutions.{i}.0.conv.bias"] = (cout,)
        shapes.update(_bn(f"postnet.convolutions.{i}.1", cout))
    return shapes


def nvidia_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in nvidia_layout().items():
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(1000, dtype=torch.long)
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=gen) + 0.5
        else:
            sd[name] = torch.randn(shape, generator=gen) * 0.3
    return sd


def save_nvidia(path, sd, prefix: str = "") -> None:
    torch.save({"state_dict": {prefix + k: v for k, v in sd.items()}, "optimizer": {"state": {}, "param_groups": []},
                "learning_rate": 1e-3, "iteration": 1000}, path)


# --------------------------------------------------------------------------- mapping


def test_mapping_is_a_bijection_and_round_trips():
    sd = nvidia_state_dict()
    ours, cfg, n_symbols, n_mels = nvidia_to_tacowave(sd)
    assert (n_symbols, n_mels) == (N_SYMBOLS, N_MELS)
    assert (cfg.symbols_embedding_dim, cfg.encoder_embedding_dim, cfg.attention_rnn_dim, cfg.attention_dim,
            cfg.attention_location_n_filters, cfg.attention_location_kernel_size, cfg.prenet_dim,
            cfg.decoder_rnn_dim, cfg.postnet_embedding_dim, cfg.encoder_n_convolutions,
            cfg.postnet_n_convolutions, cfg.prenet_layers) == (EMB, ENC, ATT_RNN, ATT, FILTERS, LOC_K, PRENET,
                                                               DEC, POST, 3, 5, 2)
    names = nvidia_names(cfg)
    assert set(names) == set(nvidia_layout())                       # all of theirs, nothing else
    assert len(set(names.values())) == len(names)                   # one-to-one
    model = build_tacotron2(cfg, n_symbols, n_mels)
    assert set(names.values()) == set(model.state_dict())           # onto all of ours
    for theirs, mine in names.items():                              # values carried over untouched
        assert torch.equal(ours[mine], sd[theirs]), theirs
    back = tacowave_to_nvidia(ours, cfg)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    again, *_ = nvidia_to_tacowave(back)
    assert set(again) == set(ours) and all(torch.equal(again[k], ours[k]) for k in ours)


def test_old_checkpoints_without_batch_norm_counters_and_fp16_convert():
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in nvidia_state_dict().items()
          if not k.endswith("num_batches_tracked")}
    ours, *_ = nvidia_to_tacowave(sd)
    assert ours["encoder.convolutions.0.norm.num_batches_tracked"].item() == 0
    assert ours["embedding.weight"].dtype == torch.float32


# --------------------------------------------------------------------------- CLI


def test_cli_converts_and_the_converted_model_runs(tmp_path, capsys):
    src, dst = tmp_path / "tacotron2_statedict.pt", tmp_path / "out" / "converted.pt"
    dst.parent.mkdir()
    sd = nvidia_state_dict()
    save_nvidia(src, sd, prefix="module.")  # DataParallel-style names
    assert convert_main(["nvidia-tacotron2", str(src), str(dst)]) == 0
    assert str(dst) in capsys.readouterr().out
    assert os.listdir(dst.parent) == ["converted.pt"]  # no temp file left behind

    ckpt = torch.load(dst, weights_only=True)
    assert (ckpt["format"], ckpt["model_type"], ckpt["version"]) == ("tacowave-checkpoint", "tacotron2", 1)
    assert ckpt["speakers"] == ["default"]
    symbols = ckpt["symbols"]
    # NVIDIA's order: pad, special, punctuation (space spelt "<sp>"), letters, ARPAbet.
    assert len(symbols) == 148 and symbols[:3] == ["_", "-", "!"] and symbols[11:13] == ["<sp>", "A"]
    assert symbols[38] == "a" and symbols[64:66] == ["@AA", "@AA0"] and symbols[-1] == "@ZH"
    get_frontend("english_nvidia").check_symbols(symbols)  # what synthesis checks
    hp = HParams.from_dict(ckpt["hparams"])
    assert hp.to_dict() == ckpt["hparams"]
    a = hp.audio
    assert (a.sample_rate, a.n_fft, a.hop_size, a.win_size, a.num_mels, a.fmin, a.fmax, a.mel_normalization,
            a.log_clamp) == (22050, 1024, 256, 1024, 80, 0.0, 8000.0, "natural_log", 1e-5)
    assert hp.text.frontend == "english_nvidia"
    assert (hp.tacotron2.decoder_rnn_dim, hp.tacotron2.prenet_dim) == (DEC, PRENET)

    model = build_tacotron2(hp.tacotron2, len(symbols), a.num_mels)
    model.load_state_dict(ckpt["model"], strict=True)
    assert torch.equal(model.decoder.attention_rnn.weight_ih, sd["decoder.attention_rnn.weight_ih"])
    ids = get_frontend("english_nvidia").text_to_sequence("Hello world.")
    result = model.inference(torch.tensor(ids), max_decoder_steps=5)
    assert result.mel.shape[1] == 80 and torch.isfinite(result.mel).all()

    # An existing output needs --force.
    assert convert_main(["nvidia-tacotron2", str(src), str(dst)]) == 1
    assert "--force" in capsys.readouterr().err
    assert convert_main(["nvidia-tacotron2", "--force", "--quiet", str(src), str(dst)]) == 0
    assert capsys.readouterr().out == ""


def test_cli_rejects_truncated_foreign_and_mismatched_files(tmp_path, capsys):
    good = tmp_path / "good.pt"
    sd = nvidia_state_dict()
    save_nvidia(good, sd)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a checkpoint\n")
    other = tmp_path / "other_model.pt"
    torch.save({"state_dict": {"conv.weight": torch.zeros(3)}}, other)
    extra = tmp_path / "extra.pt"
    save_nvidia(extra, {**sd, "decoder.extra_layer.weight": torch.zeros(2)})
    for bad, reason in ((truncated, "not a readable PyTorch checkpoint"), (foreign, "not a readable"),
                        (other, "not an NVIDIA/tacotron2 checkpoint"), (extra, "unexpected: decoder.extra_layer"),
                        (tmp_path / "missing.pt", "no such file")):
        out = tmp_path / "out.pt"
        assert convert_main(["nvidia-tacotron2", str(bad), str(out)]) == 1, bad
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(bad) in err and reason in err, err
        assert not out.exists()


def test_cli_usage_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        convert_main(["--help"])
    assert e.value.code in (0, None)
    help_text = capsys.readouterr().out
    for option in ("nvidia-tacotron2", "<checkpoint>", "<output>", "--force", "--quiet", "--help"):
        assert option in help_text
    with pytest.raises(SystemExit) as e:
        convert_main(["espnet-tacotron2", "a", "b"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_shipped_preset_is_the_conversion_preset():
    with open(os.path.join(PRESETS_DIR, "ljspeech_nvidia.json"), encoding="utf-8") as f:
        preset = json.load(f)
    preset.pop("_comment")
    assert preset == NVIDIA_PRESET
    assert len(nvidia_symbols()) == 148
