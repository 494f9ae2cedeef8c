"""tacowave.data: the data dir reader, the bucketing sampler, crops and padding."""
from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter

import numpy as np
import pytest

from tacowave.data import (BucketBatchSampler, DataDir, DataDirError, SampleKey, UtteranceDataset,
                           pad_sequences, random_crop, read_list)
from tacowave.hparams import AudioConfig
from test_training_toy import HOP, NUM_MELS, toy_hparams, write_toy_datadir


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> str:
    return write_toy_datadir(str(tmp_path_factory.mktemp("toydata")), n_train=30, n_dev=3)


# --------------------------------------------------------------------------- reading


def test_datadir_reads_lists_meta_and_features(toy_dir):
    data = DataDir(toy_dir)
    train = data.utterances("train")
    assert len(train) == 30 and data.has_split("dev") and not data.has_split("nope")
    u = train[0]
    assert u.n_samples == u.n_frames * HOP and u.text == "text 0" and u.phones == "t e k s t"
    assert data.speakers == ["spk_a", "spk_b"]
    mel = data.open_feature("mel", u.utt_id)
    assert isinstance(mel, np.memmap) and mel.shape == (u.n_frames, NUM_MELS)
    assert data.read_mel(u.utt_id, 2, 5).shape == (3, NUM_MELS)
    assert data.read_audio(u.utt_id).shape == (u.n_samples,)
    data.check_audio(toy_hparams().audio)


def test_int16_audio_is_scaled_to_float(tmp_path, toy_dir):
    data = DataDir(toy_dir)
    path = data.feature_path("audio", "train_0000")
    original = np.load(path)
    try:
        np.save(path, np.array([-32768, 0, 16384], dtype=np.int16))
        np.testing.assert_allclose(data.read_audio("train_0000"), [-1.0, 0.0, 0.5])
    finally:
        np.save(path, original)


def test_missing_datadir_names_the_path(tmp_path):
    with pytest.raises(DataDirError, match="data dir not found: .*nowhere"):
        DataDir(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataDirError, match="meta.json not found"):
        DataDir(str(tmp_path / "empty"))


def test_malformed_list_line_names_file_and_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a|spk|40|10|hello|h e\nb|spk|forty|10|x|y\n")
    with pytest.raises(DataDirError, match=r"train.txt:2: n_samples and n_frames must be integers"):
        read_list(str(path))
    path.write_text("a|spk|40|hello\n")
    with pytest.raises(DataDirError, match=r"train.txt:1: expected 6"):
        read_list(str(path))


def test_audio_section_mismatch_names_both_values(toy_dir):
    data = DataDir(toy_dir)
    audio = dataclasses.replace(toy_hparams().audio, hop_size=8, fmax=7600.0)
    with pytest.raises(DataDirError) as err:
        data.check_audio(audio)
    msg = str(err.value)
    assert "audio.hop_size = 8 in the preset but 4 in the data" in msg
    assert "audio.fmax = 7600.0 in the preset but 8000.0 in the data" in msg
    # keys that do not define the feature are not compared
    data.check_audio(dataclasses.replace(toy_hparams().audio, trim_top_db=20.0))


def test_missing_feature_file_is_reported_up_front(tmp_path):
    root = write_toy_datadir(str(tmp_path / "d"), n_train=5, n_dev=1)
    os.remove(os.path.join(root, "mel", "train_0003.npy"))

    class Mels(UtteranceDataset):
        pass

    with pytest.raises(DataDirError, match=r"1 listed utterance\(s\) have no mel file, e.g. .*train_0003.npy"):
        Mels(DataDir(root), "train")


def test_over_long_utterances_are_excluded_and_counted(toy_dir):
    data = DataDir(toy_dir)
    frames = [u.n_frames for u in data.utterances("train")]
    limit = int(np.median(frames))

    class Mels(UtteranceDataset):
        pass

    ds = Mels(data, "train", max_frames=limit)
    assert ds.excluded == sum(f > limit for f in frames) > 0
    assert len(ds) == sum(f <= limit for f in frames)
    assert ds.lengths.max() <= limit
    assert f"({ds.excluded} over {limit} frames excluded)" in ds.describe()


def test_meta_without_audio_section_is_an_error(tmp_path):
    root = write_toy_datadir(str(tmp_path / "d"), n_train=2, n_dev=1)
    with open(os.path.join(root, "meta.json"), "w") as f:
        json.dump({"corpus": "x"}, f)
    with pytest.raises(DataDirError, match="has no 'audio' section"):
        DataDir(root).check_audio(AudioConfig())


# --------------------------------------------------------------------------- crops and padding


def test_random_crop_is_hop_aligned_and_deterministic(toy_dir):
    data = DataDir(toy_dir)
    utt = max(data.utterances("train"), key=lambda u: u.n_frames)
    full_audio, full_mel = data.read_audio(utt.utt_id), data.read_mel(utt.utt_id)
    audio, mel = random_crop(data, utt, 5 * HOP + 3, np.random.default_rng(3))
    assert audio.shape == (5 * HOP,) and mel.shape == (5, NUM_MELS)
    start = next(s for s in range(utt.n_frames) if np.array_equal(full_mel[s:s + 5], mel))
    np.testing.assert_array_equal(audio, full_audio[start * HOP:(start + 5) * HOP])
    again = random_crop(data, utt, 5 * HOP + 3, np.random.default_rng(3))
    np.testing.assert_array_equal(again[0], audio)


def test_random_crop_pads_mel_context_at_the_edges(toy_dir):
    data = DataDir(toy_dir)
    utt = data.utterances("train")[0]
    full = data.read_mel(utt.utt_id)
    # A crop longer than the utterance is the whole utterance; its context frames replicate the edges.
    audio, mel = random_crop(data, utt, 10_000, np.random.default_rng(0), mel_pad=2)
    assert audio.shape == (utt.n_frames * HOP,) and mel.shape == (utt.n_frames + 4, NUM_MELS)
    np.testing.assert_array_equal(mel[:3], np.repeat(full[:1], 3, axis=0))
    np.testing.assert_array_equal(mel[-3:], np.repeat(full[-1:], 3, axis=0))
    np.testing.assert_array_equal(mel[2:-2], full)


def test_pad_sequences_shapes_and_lengths():
    batch, lengths = pad_sequences([np.ones((3, 2), np.float32), np.ones((5, 2), np.float32)], pad_value=-1.0)
    assert tuple(batch.shape) == (2, 5, 2) and lengths.tolist() == [3, 5]
    assert batch[0, 3:].eq(-1).all() and batch[0, :3].eq(1).all()


# --------------------------------------------------------------------------- the sampler


def _collect(lengths, batch_size, world, epoch, seed=5):
    per_rank = []
    for rank in range(world):
        s = BucketBatchSampler(lengths, batch_size, num_replicas=world, rank=rank, seed=seed)
        s.set_epoch(epoch)
        per_rank.append(list(s))
        assert len(per_rank[-1]) == len(s)
    return per_rank


@pytest.mark.parametrize("n,batch_size,world", [(96, 4, 3), (100, 4, 3), (37, 5, 2), (10, 3, 1)])
def test_shards_cover_the_data_once_with_equal_batch_counts(n, batch_size, world):
    lengths = np.random.default_rng(0).integers(10, 500, size=n)
    per_rank = _collect(lengths, batch_size, world, epoch=2)
    assert len({len(batches) for batches in per_rank}) == 1, "ranks disagree on batches per epoch"
    seen = Counter(k.index for batches in per_rank for batch in batches for k in batch)
    assert set(seen) == set(range(n)) and all(c == 1 for c in seen.values())
    assert all(0 < len(batch) <= batch_size for batches in per_rank for batch in batches)


def test_last_batch_smaller_than_world_is_topped_up():
    per_rank = _collect(np.arange(9), 2, 4, epoch=0)  # 9 = 8 + 1: one item for four ranks
    assert len({len(b) for b in per_rank}) == 1
    seen = Counter(k.index for batches in per_rank for batch in batches for k in batch)
    assert set(seen) == set(range(9)) and sum(seen.values()) == 12  # 3 repeats, < world size


def test_sampler_is_deterministic_per_epoch_and_reshuffles_between_epochs():
    lengths = np.random.default_rng(1).integers(10, 500, size=200)
    a, b, c = _collect(lengths, 8, 2, 3), _collect(lengths, 8, 2, 3), _collect(lengths, 8, 2, 4)
    assert a == b
    assert a != c


def test_batches_are_length_bucketed():
    lengths = np.random.default_rng(2).integers(10, 1000, size=2048)
    (batches,) = _collect(lengths, 16, 1, 0)
    spread = np.mean([np.ptp(lengths[[k.index for k in b]]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[np.random.default_rng(i).choice(2048, 16)]) for i in range(50)])
    assert spread < 0.2 * random_spread


def test_one_process_with_the_global_batch_sees_what_the_ranks_share():
    lengths = np.random.default_rng(3).integers(10, 500, size=64)
    (single,) = _collect(lengths, 8, 1, 1)
    ranks = _collect(lengths, 4, 2, 1)
    merged = [sorted(k.index for k in r0 + r1) for r0, r1 in zip(*ranks)]
    assert merged == [sorted(k.index for k in b) for b in single]
    # and the per-item seeds (random crops) agree as well
    assert {k for b in single for k in b} == {k for r in ranks for b in r for k in b}


def test_start_batch_skips_consumed_batches():
    lengths = np.arange(50)
    s = BucketBatchSampler(lengths, 4, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=5)
    assert list(s) == full[5:]


def test_unshuffled_batches_are_sorted_and_fixed():
    lengths = np.random.default_rng(4).integers(10, 500, size=30)
    s = BucketBatchSampler(lengths, 4, shuffle=False)
    flat = [k.index for b in s for k in b]
    assert sorted(flat) == list(range(30))
    assert list(lengths[flat]) == sorted(lengths)


def test_sample_key_rng_is_private_per_item():
    assert SampleKey(3, 99).rng().integers(1 << 30) == SampleKey(3, 99).rng().integers(1 << 30)
    assert SampleKey(3, 99).rng().integers(1 << 30) != SampleKey(3, 100).rng().integers(1 << 30)
