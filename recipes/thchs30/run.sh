#!/usr/bin/env bash
# Tacotron-2 + WaveNet on THCHS-30: 60 Mandarin speakers, ~30 h, 16 kHz, official train/dev/test
# split; a multi-speaker model on pinyin initials + tonal finals (presets/thchs30.json).
# `--help` lists stages and options.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../common/recipe.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/recipe.sh"

# >>> options
corpus_dir=downloads/data_thchs30  # the unpacked corpus: data/*.wav + *.wav.trn and train/ dev/ test/
speakers=""            # comma-separated speakers (e.g. A2,A4,B6; empty: all)
# <<< options

recipe_describe "THCHS-30 (openslr.org/18): 60 speakers, 16 kHz, ~30 h, official split; multi-speaker."
recipe_stage0_title "data: check the THCHS-30 layout (prints where to download it; never downloads)"

recipe_stage0() {
  local split
  layout_expect_wavs "$corpus_dir/data"
  layout_expect_glob "$corpus_dir/data" '*.wav.trn'
  for split in train dev test; do layout_expect_dir "$corpus_dir/$split"; done
  layout_check "THCHS-30" <<MSG
Download data_thchs30.tgz (6.4 GB) from https://www.openslr.org/18/ :
    mkdir -p downloads
    wget https://www.openslr.org/resources/18/data_thchs30.tgz
    tar xzf data_thchs30.tgz -C downloads      # -> downloads/data_thchs30/{data,train,dev,test}/
MSG
}

recipe_stage1() { recipe_preprocess thchs30 ${speakers:+"--speakers=$speakers"}; }

recipe_fixed_sentences() {
  cat <<'TXT'
fixed-01|今天天气很好。
fixed-02|我们明天早上八点出发。
fixed-03|这本书非常有意思。
TXT
}

recipe_main "$@"
