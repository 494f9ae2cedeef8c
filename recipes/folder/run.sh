#!/usr/bin/env bash
# Tacotron-2 + WaveNet on your own recordings: a folder of wavs plus a metadata.csv with
# `file|text` (one speaker) or `file|speaker|text` lines. Choose the preset whose sample rate and
# front-end fit the recordings (--preset). `--help` lists stages and options.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../common/recipe.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/recipe.sh"

# >>> options
corpus_dir=downloads/my_voice  # your folder: metadata.csv and the wavs it names (directly or in wavs/)
preset=ljspeech        # preset to use: ljspeech (English, 22.05 kHz), cmu_arctic (English, 16 kHz), jsut, thchs30, or a JSON file
speakers=""            # comma-separated speakers to use, for a file|speaker|text metadata.csv (empty: all)
# <<< options

recipe_describe "Bring your own voice: any folder of wavs + metadata.csv (file|text or file|speaker|text).
Aim for at least an hour of clean single-speaker speech; pick --preset by sample rate and language,
and add --wer for English to score intelligibility."
recipe_stage0_title "data: check the folder layout (metadata.csv and wavs)"

recipe_stage0() {
  layout_expect_file "$corpus_dir/metadata.csv"
  layout_expect_wavs "$corpus_dir" 2
  layout_check "a folder of wavs with metadata.csv" <<'MSG'
Put your recordings in one folder (mono wav; any sample rate, they are resampled to the preset's)
with a metadata.csv next to them, one line per recording:
    0001|The first sentence I recorded.                  (file|text, one speaker)
    anna/0001.wav|anna|The first sentence I recorded.   (file|speaker|text)
where "file" names the recording's wav (see `python preprocess.py --help` for the details).
MSG
}

recipe_stage1() { recipe_preprocess folder ${speakers:+"--speakers=$speakers"}; }

recipe_fixed_sentences() {
  cat <<'TXT'
fixed-01|The quick brown fox jumps over the lazy dog.
fixed-02|Please remind me to buy milk, bread and six oranges on Friday.
fixed-03|Which of these two roads leads to the old lighthouse?
TXT
}

recipe_main "$@"
