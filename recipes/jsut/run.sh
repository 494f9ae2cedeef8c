#!/usr/bin/env bash
# Tacotron-2 + WaveNet on JSUT 1.1: one female Japanese speaker, ~10 h, recorded at 48 kHz and
# resampled to 24 kHz by the preset; phonemes from pyopenjtalk (presets/jsut.json).
# `--help` lists stages and options.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../common/recipe.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/recipe.sh"

# >>> options
corpus_dir=downloads/jsut_ver1.1  # the unpacked corpus: <subset>/wav/ and <subset>/transcript_utf8.txt
subsets=""             # comma-separated subsets, e.g. basic5000,travel1000 (empty: preprocess.py's default)
# <<< options

recipe_describe "JSUT 1.1 (sites.google.com/site/shinnosuketakamichi/publication/jsut): one speaker, 48 kHz -> 24 kHz, ~10 h."
recipe_stage0_title "data: check the JSUT 1.1 layout (prints where to download it; never downloads)"

recipe_stage0() {
  local subset
  for subset in $(printf '%s' "${subsets:-basic5000}" | tr ',' ' '); do
    layout_expect_wavs "$corpus_dir/$subset/wav"
    layout_expect_file "$corpus_dir/$subset/transcript_utf8.txt"
  done
  layout_check "JSUT 1.1" <<MSG
Download it from https://sites.google.com/site/shinnosuketakamichi/publication/jsut:
    mkdir -p downloads && cd downloads
    wget http://ss-takashi.sakura.ne.jp/corpus/jsut_ver1.1.zip
    unzip jsut_ver1.1.zip      # -> jsut_ver1.1/basic5000/{wav/,transcript_utf8.txt}, ...
MSG
}

recipe_stage1() { recipe_preprocess jsut ${subsets:+"--subsets=$subsets"}; }

recipe_fixed_sentences() {
  cat <<'TXT'
fixed-01|今日はとても良い天気ですね。
fixed-02|駅まで歩いて十分ほどかかります。
fixed-03|新しい本を三冊買いました。
TXT
}

recipe_main "$@"
