#!/usr/bin/env bash
# Tacotron-2 + WaveNet on LJSpeech-1.1: one female US-English speaker, 13,100 clips, ~24 h,
# 22.05 kHz, English character front-end (presets/ljspeech.json). `--help` lists stages and options.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../common/recipe.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/recipe.sh"

# >>> options
corpus_dir=downloads/LJSpeech-1.1  # the unpacked corpus: metadata.csv and wavs/
wer=true               # stage 6 also scores a word error rate (offline English recogniser)
# <<< options

recipe_describe "LJSpeech-1.1 (keithito.com/LJ-Speech-Dataset): one speaker, 22.05 kHz, ~24 h."
recipe_stage0_title "data: check the LJSpeech-1.1 layout (prints where to download it; never downloads)"

recipe_stage0() {
  # The folder that holds LJSpeech-1.1 is accepted too (as preprocess.py accepts it).
  if [ ! -f "$corpus_dir/metadata.csv" ] && [ -f "$corpus_dir/LJSpeech-1.1/metadata.csv" ]; then
    corpus_dir="$corpus_dir/LJSpeech-1.1"
  fi
  layout_expect_file "$corpus_dir/metadata.csv"
  layout_expect_wavs "$corpus_dir/wavs"
  layout_check "LJSpeech-1.1" <<MSG
Download it from https://keithito.com/LJ-Speech-Dataset/ (2.6 GB):
    mkdir -p downloads
    wget https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2
    tar xjf LJSpeech-1.1.tar.bz2 -C downloads      # -> downloads/LJSpeech-1.1/{metadata.csv,wavs/}
MSG
}

recipe_stage1() { recipe_preprocess ljspeech; }

recipe_fixed_sentences() {
  cat <<'TXT'
fixed-01|The quick brown fox jumps over the lazy dog.
fixed-02|Scientists at the observatory counted 1,248 new asteroids last year.
fixed-03|Would you like a cup of tea before the meeting starts?
TXT
}

recipe_main "$@"
