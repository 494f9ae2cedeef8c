#!/usr/bin/env bash
# The demo: a ~30-minute English corpus spoken by flite's "slt" voice (built here, 16 kHz), then
# every stage with presets/demo.json (tiny models sized for a CPU) into exp/demo/. The default run
# fits in about 90 minutes on 2 CPU cores (measured on a fresh machine, install included: 1 h 7 min
# on a Zen 4, where Tacotron-2 reaches its step cap in 41 min; about 1 h 25 min where its
# 60 minutes bind); a GPU, when present, is used automatically, and the step caps below end the
# training stages there in about 25 minutes.
#   bash recipes/demo/run.sh            the full demo
#   bash recipes/demo/run.sh --quick    every stage in a few minutes (24 sentences, tiny budgets)
# Rerunning continues where the last run stopped. `--help` lists stages and options.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../common/recipe.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/recipe.sh"

# >>> options
corpus_dir=downloads/demo_flite  # where stage 0 builds the flite corpus (LJSpeech layout + heldout/)
voice=slt              # flite voice (`flite -lv` lists them)
limit=0                # use only the first N sentences of each list (0: all 606 + 20 held-out)
quick=false            # smoke run: 24 sentences, ~1 minute per model, into exp/demo_quick/
tacotron2_max_minutes=60  # Tacotron-2 wall-clock budget in minutes, summed over reruns
tacotron2_max_steps=12000  # ...or this many steps, whichever comes first (2 Zen 3 cores stop on the minutes near 9,700, 2 Zen 4 cores on this cap after 41 min; an H200 takes ~15 min)
wavenet_max_minutes=20  # WaveNet wall-clock budget in minutes, summed over reruns
wavenet_max_steps=10000  # ...or this many steps (2 CPU cores reach 1,000-1,850 in 20 min; a GPU ~7 min)
eval_limit=0           # held-out sentences synthesised in stage 5 (0: all 20)
wavenet_limit=10       # of those, how many also go through WaveNet (slow on a CPU; 0: all)
wer=true               # stage 6 also scores a word error rate (offline English recogniser)
# <<< options

recipe_describe "The built-in demo: flite speech of recipes/demo/sentences.txt (606 sentences, ~30 min),
evaluated on recipes/demo/heldout.txt (20 sentences never trained on) against flite's own renditions."
recipe_stage0_title "data: build the flite corpus (recipes/demo/make_corpus.py; resumable)"

# --quick changes the defaults the user did not set: a separate corpus/data/exp, tiny budgets.
recipe_before_run() {
  [ "$quick" = true ] || return 0
  local name value
  for name in limit corpus_dir data_dir exp_dir tacotron2_max_steps tacotron2_max_minutes \
              wavenet_max_steps wavenet_max_minutes eval_limit wavenet_limit; do
    recipe_user_set "$name" && continue
    case "$name" in
      limit) value=24 ;;
      corpus_dir) value=downloads/demo_flite_quick ;;
      data_dir) value=data/demo_quick ;;
      exp_dir) value=exp/demo_quick ;;
      tacotron2_max_steps|wavenet_max_steps) value=20 ;;
      tacotron2_max_minutes|wavenet_max_minutes) value=1 ;;
      eval_limit) value=2 ;;
      wavenet_limit) value=1 ;;
    esac
    printf -v "$name" '%s' "$value"
  done
  # An untrained decoder never predicts "stop": cap its length so synthesis stays short.
  hparams="tacotron2.max_decoder_steps=40${hparams:+,$hparams}"
}

recipe_stage0() {
  recipe_python
  local args=(--voice "$voice" --limit "$limit")
  [ -z "$num_workers" ] || args+=(--num-workers "$num_workers")
  recipe_run "$PY" "$RECIPE_ROOT/recipes/demo/make_corpus.py" "$corpus_dir" "${args[@]}"
}

recipe_stage1() {
  # 30 dev and 30 eval utterances whatever the corpus size: the demo is judged on heldout.txt,
  # so added sentences go to training rather than to a longer dev pass at every eval
  if [ "$limit" = 0 ]; then
    recipe_preprocess ljspeech --dev-count 30 --eval-count 30
  else
    recipe_preprocess ljspeech
  fi
}

# The eval list: the held-out sentences, with flite's renditions as references.
recipe_eval_list() {  # out-dir limit
  [ -f "$corpus_dir/heldout/metadata.csv" ] || recipe_die "no held-out references in $corpus_dir/heldout: run stage 0 first"
  recipe_run "$PY" "$RECIPE_ROOT/recipes/common/eval_list.py" --ljspeech-dir "$corpus_dir/heldout" --limit "$2" "$1"
}

recipe_fixed_sentences() {
  cat <<'TXT'
fixed-01|This voice learned to speak in about an hour.
fixed-02|The weather tomorrow will be sunny with a light breeze.
fixed-03|Can you believe how quickly the summer went by?
TXT
}

recipe_main "$@"
