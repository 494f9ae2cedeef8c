#!/usr/bin/env bash
# Tacotron-2 + WaveNet on CMU Arctic: 7 US-English speakers (awb bdl clb jmk ksp rms slt),
# ~1,132 prompts each, 16 kHz; a multi-speaker model (speaker id per utterance), English
# character front-end (presets/cmu_arctic.json). `--help` lists stages and options.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../common/recipe.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/recipe.sh"

# >>> options
corpus_dir=downloads/cmu_arctic  # folder holding cmu_us_<speaker>_arctic/{wav/,etc/txt.done.data}
speakers=awb,bdl,clb,jmk,ksp,rms,slt  # comma-separated speakers to use
wer=true               # stage 6 also scores a word error rate (offline English recogniser)
# <<< options

recipe_describe "CMU Arctic (festvox.org/cmu_arctic): 7 speakers, 16 kHz, ~1 h each; multi-speaker."
recipe_stage0_title "data: check the CMU Arctic layout of the chosen --speakers (prints where to download; never downloads)"

recipe_stage0() {
  local spk
  [ -n "$speakers" ] || recipe_usage_error "--speakers is empty"
  for spk in ${speakers//,/ }; do
    layout_expect_wavs "$corpus_dir/cmu_us_${spk}_arctic/wav"
    layout_expect_file "$corpus_dir/cmu_us_${spk}_arctic/etc/txt.done.data"
  done
  layout_check "CMU Arctic ($speakers)" <<MSG
Download each speaker from http://festvox.org/cmu_arctic/ (one packed archive per speaker):
    mkdir -p downloads/cmu_arctic && cd downloads/cmu_arctic
    for spk in ${speakers//,/ }; do
      wget http://festvox.org/cmu_arctic/packed/cmu_us_\${spk}_arctic.tar.bz2
      tar xjf cmu_us_\${spk}_arctic.tar.bz2      # -> cmu_us_\${spk}_arctic/{wav/,etc/txt.done.data}
    done
MSG
}

recipe_stage1() { recipe_preprocess cmu_arctic "--speakers=$speakers"; }

recipe_fixed_sentences() {
  cat <<'TXT'
fixed-01|The quick brown fox jumps over the lazy dog.
fixed-02|Our train leaves platform 4 at twenty past nine.
fixed-03|Is there anything else I can help you with today?
TXT
}

recipe_main "$@"
