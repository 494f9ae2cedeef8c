# shellcheck shell=bash
# What every recipes/<corpus>/run.sh shares: option parsing, logging, stage banners with timing,
# and stages 1-6 (preprocess -> Tacotron-2 -> GTA mels -> WaveNet -> synthesis -> evaluation),
# which are the same for every corpus. A recipe sources this file, declares its own options in a
# "# >>> options" ... "# <<< options" block (one `name=default  # help` a line), defines
#   recipe_stage0          stage 0: check (or, for the demo, build) the corpus
#   recipe_stage1          stage 1: `recipe_preprocess <corpus> [preprocess.py options]`
#   recipe_fixed_sentences the fixed test sentences, `name|text` lines on stdout
# and optionally
#   recipe_eval_list DIR N the eval list: DIR/texts.txt (`name|text`) + DIR/refs/<name>.wav
#                          (default: the first N utterances of <data_dir>/eval.txt)
#   recipe_before_run      hook run after option parsing (e.g. the demo's --quick defaults)
# and finally calls `recipe_main "$@"`.
#
# Options: `--name value`, `--name=value` (dashes or underscores), or the environment variable
# TACOWAVE_<NAME> (flags win). A true/false option is also a switch: `--name`, `--no-name`.
# Relative paths given by the user are relative to the current directory; relative defaults are
# relative to the repository root. Portable to bash 3.2 (macOS): no associative arrays.

RECIPE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RECIPE_SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
RECIPE_NAME="$(basename "$(cd "$(dirname "$0")" && pwd)")"
RECIPE_PROG="recipes/$RECIPE_NAME/run.sh"
RECIPE_INVOKE_PWD="$PWD"
RECIPE_STAGE_TITLES=(
  ""  # stage 0: set by the recipe with recipe_stage0_title
  "preprocess: features and lists into <data_dir> (preprocess.py)"
  "train Tacotron-2 into <exp_dir>/tacotron2 (resumes from its latest checkpoint)"
  "dump ground-truth-aligned (GTA) Tacotron-2 mels into <data_dir>/gta"
  "train WaveNet on GTA mels (--vocoder-features gt: real mels) into <exp_dir>/wavenet_<features>"
  "synthesise the eval list and the fixed sentences (Griffin-Lim and WaveNet) into <exp_dir>/synthesis"
  "evaluate (MCD, log-F0 RMSE, alignment, WER) into <exp_dir>/metrics"
)
RECIPE_DESCRIPTION=""
RECIPE_OPTIONS=""     # option names, in the order --help lists them
RECIPE_USER_SET=" "   # names the user set (flag or environment), space-separated
RECIPE_CURRENT_STAGE=""
RECIPE_STAGE_START=0
RECIPE_START=$(date +%s)
RECIPE_TIMINGS=""
PY=""

# >>> options (shared by every recipe; a recipe may change a default in its own block)
stage=0                # first stage to run
stop_stage=6           # last stage to run
corpus_dir=""          # the corpus (set by each recipe)
data_dir="data/$RECIPE_NAME"  # preprocessed features, lists and GTA mels (the data dir)
exp_dir="exp/$RECIPE_NAME"  # checkpoints, tensorboard logs, synthesis, metrics
preset="presets/$RECIPE_NAME.json"  # preset JSON (a path or the name of a shipped preset)
hparams=""             # overrides for every stage, e.g. "train_tacotron2.batch_size=8,wavenet.layers=12"
num_workers=""         # worker processes for preprocessing and data loading (empty: the CLIs choose)
tacotron2_max_steps="" # stop Tacotron-2 training at this step (empty: the preset's max_steps)
tacotron2_max_minutes=""  # Tacotron-2 wall-clock budget in minutes, summed over reruns (empty: the preset's per run; 0: none)
wavenet_max_steps=""   # stop WaveNet training at this step (empty: the preset's max_steps)
wavenet_max_minutes="" # WaveNet wall-clock budget in minutes, summed over reruns (empty: the preset's per run; 0: none)
vocoder_features=gta   # mels the WaveNet trains on: gta (Tacotron-2 teacher-forced) or gt (real)
eval_limit=20          # eval-list utterances synthesised in stage 5 (0: all)
wavenet_limit=0        # of those, how many also go through WaveNet (0: all of them)
wer=false              # stage 6 also scores a word error rate with an offline recogniser (English)
synthesis_args=""      # extra options for synthesis.py (word-split), e.g. "--speaker=slt"
fixed_sentences=""     # file of fixed test sentences (name|text or plain lines) instead of the recipe's
interpreter=""         # run the stages with this Python as it is (your own environment; no setup). Empty: .venv via tools/setup_env.sh
# <<< options

# ----------------------------------------------------------------------------- logging

recipe_log() { printf '[%s %s] %s\n' "$RECIPE_NAME" "$(date +%H:%M:%S)" "$*"; }

recipe_die() {
  printf '%s: error: %s\n' "$RECIPE_PROG" "$*" >&2
  exit 1
}

recipe_usage_error() {
  printf '%s: %s (see %s --help)\n' "$RECIPE_PROG" "$*" "$RECIPE_PROG" >&2
  exit 2
}

recipe_duration() {  # seconds -> "1h02m03s" / "2m03s" / "3s"
  local s=$1
  if [ "$s" -ge 3600 ]; then printf '%dh%02dm%02ds' $((s / 3600)) $((s % 3600 / 60)) $((s % 60))
  elif [ "$s" -ge 60 ]; then printf '%dm%02ds' $((s / 60)) $((s % 60))
  else printf '%ds' "$s"; fi
}

recipe_describe() { RECIPE_DESCRIPTION="$*"; }
recipe_stage0_title() { RECIPE_STAGE_TITLES[0]="$*"; }

# ----------------------------------------------------------------------------- options

# The `name=default  # help` lines of a file's options block, as "name<TAB>help" lines.
_recipe_option_lines() {
  sed -n -e '/^# >>> options/,/^# <<< options/{' \
         -e 's/^\([a-z][a-z0-9_]*\)=[^#]*# \(.*\)$/\1	\2/p' \
         -e 's/^\([a-z][a-z0-9_]*\)=[^#]*$/\1	/p' -e '}' "$1"
}

RECIPE_OPTION_HELP=""  # "name<TAB>help" lines, the recipe's first (its help text wins)
_recipe_option_help() {
  local name rest
  while IFS="	" read -r name rest; do
    if [ "$name" = "$1" ]; then printf '%s' "$rest"; return 0; fi
  done <<< "$RECIPE_OPTION_HELP"
}

_recipe_collect_options() {
  local name rest lib_lines recipe_lines
  lib_lines="$(_recipe_option_lines "${BASH_SOURCE[0]}")"
  recipe_lines="$(_recipe_option_lines "$RECIPE_SCRIPT")"
  RECIPE_OPTION_HELP="$recipe_lines
$lib_lines"
  RECIPE_OPTIONS=""
  while IFS="	" read -r name rest; do
    [ -n "$name" ] || continue
    case " $RECIPE_OPTIONS " in *" $name "*) ;; *) RECIPE_OPTIONS="$RECIPE_OPTIONS $name" ;; esac
  done <<< "$lib_lines
$recipe_lines"
}

_recipe_is_option() { case " $RECIPE_OPTIONS " in *" $1 "*) return 0 ;; esac; return 1; }
_recipe_is_bool() { case "${!1}" in true|false) return 0 ;; esac; return 1; }
_recipe_env_name() { printf 'TACOWAVE_%s' "$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]')"; }
recipe_user_set() { case "$RECIPE_USER_SET" in *" $1 "*) return 0 ;; esac; return 1; }

_recipe_set() {  # name value
  if _recipe_is_bool "$1"; then
    case "$2" in true|false) ;; *) recipe_usage_error "--${1//_/-} takes true or false, got '$2'" ;; esac
  fi
  printf -v "$1" '%s' "$2"
  recipe_user_set "$1" || RECIPE_USER_SET="$RECIPE_USER_SET$1 "
}

recipe_help() {
  local name env value
  printf 'usage: %s [--stage N] [--stop-stage M] [--<option> VALUE ...]\n\n' "$RECIPE_PROG"
  [ -z "$RECIPE_DESCRIPTION" ] || printf '%s\n\n' "$RECIPE_DESCRIPTION"
  printf 'stages (run --stage N through --stop-stage M; each can be rerun and continues where it stopped):\n'
  local i
  for i in 0 1 2 3 4 5 6; do printf '  %d  %s\n' "$i" "${RECIPE_STAGE_TITLES[$i]}"; done
  printf '\noptions (--name VALUE or --name=VALUE; environment TACOWAVE_<NAME>; flags win):\n'
  for name in $RECIPE_OPTIONS; do
    env="$(_recipe_env_name "$name")"
    value="${!name}"
    if _recipe_is_bool "$name"; then
      printf '  --%s | --no-%s   (%s, default: %s)\n' "${name//_/-}" "${name//_/-}" "$env" "$value"
    else
      printf '  --%s VALUE   (%s, default: %s)\n' "${name//_/-}" "$env" "${value:-<empty>}"
    fi
    printf '      %s\n' "$(_recipe_option_help "$name")"
  done
  printf '\nRelative paths given on the command line are relative to the current directory;\n'
  printf 'the defaults are relative to the repository root (%s).\n' "$RECIPE_ROOT"
}

# Environment first, then the command line (so flags win).
recipe_parse_args() {
  _recipe_collect_options
  local name env arg value
  for name in $RECIPE_OPTIONS; do
    env="$(_recipe_env_name "$name")"
    if [ -n "${!env+x}" ]; then _recipe_set "$name" "${!env}"; fi
  done
  while [ $# -gt 0 ]; do
    arg=$1
    shift
    case "$arg" in
      -h|--help) recipe_help; exit 0 ;;
      --*=*) name="${arg%%=*}"; value="${arg#*=}"; name="${name#--}"; name="${name//-/_}"
             _recipe_is_option "$name" || recipe_usage_error "unknown option '${arg%%=*}'"
             _recipe_set "$name" "$value" ;;
      --no-*) name="${arg#--no-}"; name="${name//-/_}"
              if _recipe_is_option "$name" && _recipe_is_bool "$name"; then _recipe_set "$name" false
              else recipe_usage_error "unknown option '$arg'"; fi ;;
      --*) name="${arg#--}"; name="${name//-/_}"
           _recipe_is_option "$name" || recipe_usage_error "unknown option '$arg'"
           if _recipe_is_bool "$name"; then
             case "${1:-}" in true|false) _recipe_set "$name" "$1"; shift ;; *) _recipe_set "$name" true ;; esac
           else
             [ $# -gt 0 ] || recipe_usage_error "option '$arg' needs a value"
             _recipe_set "$name" "$1"; shift
           fi ;;
      *) recipe_usage_error "unexpected argument '$arg'" ;;
    esac
  done
  for name in stage stop_stage; do
    [[ "${!name}" =~ ^[0-9]+$ ]] || recipe_usage_error "--${name//_/-} must be a stage number, got '${!name}'"
  done
  for name in eval_limit wavenet_limit; do
    [[ "${!name}" =~ ^[0-9]+$ ]] || recipe_usage_error "--${name//_/-} must be a number >= 0, got '${!name}'"
  done
  for name in tacotron2_max_steps wavenet_max_steps; do
    [[ "${!name}" =~ ^[0-9]*$ ]] || recipe_usage_error "--${name//_/-} must be a step count, got '${!name}'"
  done
  for name in tacotron2_max_minutes wavenet_max_minutes; do
    [[ "${!name}" =~ ^([0-9]+([.][0-9]*)?)?$ ]] || recipe_usage_error "--${name//_/-} must be minutes, got '${!name}'"
  done
  case "$vocoder_features" in gta|gt) ;; *) recipe_usage_error "--vocoder-features must be gta or gt, got '$vocoder_features'" ;; esac
}

# Make path options absolute: user values against the invocation directory, defaults against the
# repository root. The preset stays a bare name when it is not a file (the CLIs resolve names).
recipe_resolve_paths() {
  local name value
  for name in "$@"; do
    value="${!name}"
    [ -n "$value" ] || continue
    case "$value" in /*) continue ;; esac
    if recipe_user_set "$name"; then printf -v "$name" '%s' "$RECIPE_INVOKE_PWD/$value"
    else printf -v "$name" '%s' "$RECIPE_ROOT/$value"; fi
  done
}

_recipe_resolve_preset() {
  if recipe_user_set preset && [ -f "$RECIPE_INVOKE_PWD/$preset" ]; then
    case "$preset" in /*) ;; *) preset="$RECIPE_INVOKE_PWD/$preset" ;; esac
  elif [ -f "$RECIPE_ROOT/$preset" ]; then
    preset="$RECIPE_ROOT/$preset"
  fi
}

# ----------------------------------------------------------------------------- stages and timing

_recipe_close_stage() {
  [ -n "$RECIPE_CURRENT_STAGE" ] || return 0
  local took=$(( $(date +%s) - RECIPE_STAGE_START ))
  recipe_log "stage $RECIPE_CURRENT_STAGE done in $(recipe_duration "$took")"
  RECIPE_TIMINGS="$RECIPE_TIMINGS  stage $RECIPE_CURRENT_STAGE: $(recipe_duration "$took")
"
  RECIPE_CURRENT_STAGE=""
}

# `if recipe_stage N; then ...; fi`: true when N is selected; prints the banner and starts its clock.
recipe_stage() {
  local n=$1
  if [ "$n" -lt "$stage" ] || [ "$n" -gt "$stop_stage" ]; then return 1; fi
  _recipe_close_stage
  RECIPE_CURRENT_STAGE=$n
  RECIPE_STAGE_START=$(date +%s)
  printf '\n'
  recipe_log "===== stage $n: ${RECIPE_STAGE_TITLES[$n]}"
}

_recipe_on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$RECIPE_CURRENT_STAGE" ]; then
    local took=$(( $(date +%s) - RECIPE_STAGE_START ))
    printf '%s: stage %s failed after %s (exit code %d); fix the cause and rerun with --stage %s\n' \
      "$RECIPE_PROG" "$RECIPE_CURRENT_STAGE" "$(recipe_duration "$took")" "$rc" "$RECIPE_CURRENT_STAGE" >&2
  fi
}

# ----------------------------------------------------------------------------- python and the CLIs

# The project's own interpreter: tools/setup_env.sh first (idempotent, cheap when nothing changed).
recipe_python() {
  [ -z "$PY" ] || return 0
  if [ -n "$interpreter" ]; then
    PY="$(command -v "$interpreter" || true)"
    [ -n "$PY" ] || recipe_die "--interpreter: no program $interpreter"
    "$PY" -c 'import torch, tacowave' 2>/dev/null || recipe_die "--interpreter: $interpreter cannot import torch and tacowave (install tacowave there, or put the checkout on PYTHONPATH)"
    return 0
  fi
  bash "$RECIPE_ROOT/tools/setup_env.sh"
  PY="${TACOWAVE_VENV:-$RECIPE_ROOT/.venv}/bin/python"
  [ -x "$PY" ] || recipe_die "no python at $PY after tools/setup_env.sh"
}

# Fail clearly when a CLI this stage needs is not in the checkout (or does not import).
RECIPE_CLIS_OK=" "
recipe_require_cli() {
  local name=$1 err
  case "$RECIPE_CLIS_OK" in *" $name "*) return 0 ;; esac
  recipe_python
  [ -f "$RECIPE_ROOT/$name.py" ] || recipe_die "stage $RECIPE_CURRENT_STAGE needs $name.py, which this checkout does not have yet"
  if ! err="$("$PY" -c "import tacowave.cli.$name" 2>&1)"; then
    recipe_die "stage $RECIPE_CURRENT_STAGE needs $name.py, but tacowave.cli.$name does not import: $(printf '%s\n' "$err" | tail -n 1)"
  fi
  RECIPE_CLIS_OK="$RECIPE_CLIS_OK$name "
}

# Print a command (paths inside the repository shortened); recipe_run also runs it.
recipe_show() {
  local shown="$*"
  recipe_log "+ ${shown//$RECIPE_ROOT\//}"
}
recipe_run() {
  recipe_show "$@"
  "$@"
}

# The latest checkpoint in a folder: checkpoint_latest.pth (what train.py writes) or .pt, a
# checkpoint_latest link or pointer file, or else the newest checkpoint*.pt[h]. Prints nothing
# and fails when there is none.
recipe_latest_checkpoint() {
  local dir=$1 target newest ext
  for ext in pth pt; do
    if [ -f "$dir/checkpoint_latest.$ext" ]; then printf '%s\n' "$dir/checkpoint_latest.$ext"; return 0; fi
  done
  if [ -e "$dir/checkpoint_latest" ]; then
    if [ -L "$dir/checkpoint_latest" ] || [ "$(wc -c < "$dir/checkpoint_latest")" -gt 4096 ]; then
      printf '%s\n' "$dir/checkpoint_latest"; return 0
    fi
    target="$(head -n 1 "$dir/checkpoint_latest" | tr -d '\r')"
    case "$target" in /*) ;; *) target="$dir/$target" ;; esac
    if [ -f "$target" ]; then printf '%s\n' "$target"; return 0; fi
  fi
  newest="$(find "$dir" -maxdepth 1 \( -name 'checkpoint*.pt' -o -name 'checkpoint*.pth' \) -type f \
    -exec ls -t {} + 2>/dev/null | head -n 1 || true)"
  [ -n "$newest" ] || return 1
  printf '%s\n' "$newest"
}

recipe_need_checkpoint() {  # dir "what" "which stage makes it"
  local ckpt
  ckpt="$(recipe_latest_checkpoint "$1")" || recipe_die "no $2 checkpoint in $1: run $3 first"
  printf '%s\n' "$ckpt"
}

# A stamp file records what an output was made from (checksums of its inputs); a stage whose
# stamp still matches is up to date and skipped.
recipe_fingerprint() {
  local f
  for f in "$@"; do
    if [ -f "$f" ]; then printf '%s %s\n' "$(cksum < "$f")" "$f"; else printf '%s\n' "$f"; fi
  done
}
recipe_stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
recipe_stamp_write() { printf '%s\n' "$2" > "$1.tmp" && mv "$1.tmp" "$1"; }

_recipe_hparams_args() {  # extra hparams -> --hparams=... (the user's come last: they win)
  local all="$1"
  [ -z "$hparams" ] || all="${all:+$all,}$hparams"
  [ -z "$all" ] || printf -- '--hparams=%s\n' "$all"
}

# ----------------------------------------------------------------------------- stage 0 helpers

RECIPE_LAYOUT_MISSING=""
layout_expect_dir() { [ -d "$1" ] || RECIPE_LAYOUT_MISSING="$RECIPE_LAYOUT_MISSING    missing folder: $1
"; }
layout_expect_file() { [ -f "$1" ] || RECIPE_LAYOUT_MISSING="$RECIPE_LAYOUT_MISSING    missing file:   $1
"; }
layout_expect_glob() {  # folder $1 holding a file named like $2 (at most $3 levels down, default 1)
  if [ ! -d "$1" ]; then
    layout_expect_dir "$1"
  elif [ -z "$(find "$1" -maxdepth "${3:-1}" -iname "$2" -print 2>/dev/null | head -n 1)" ]; then
    RECIPE_LAYOUT_MISSING="$RECIPE_LAYOUT_MISSING    no $2 files in: $1
"
  fi
}
layout_expect_wavs() { layout_expect_glob "$1" '*.wav' "${2:-1}"; }
# After the layout_expect_* calls: on anything missing, print it and how to get the corpus; fail.
layout_check() {  # $1: what the corpus is; stdin: download instructions
  local instructions
  instructions="$(cat)"
  if [ -n "$RECIPE_LAYOUT_MISSING" ]; then
    {
      printf '%s: %s is not at %s:\n%s\n' "$RECIPE_PROG" "$1" "$corpus_dir" "$RECIPE_LAYOUT_MISSING"
      printf '%s\n' "$instructions"
      printf '\nThen rerun (the recipe never downloads), pointing --corpus-dir (or TACOWAVE_CORPUS_DIR) at it.\n'
    } >&2
    exit 1
  fi
  recipe_log "$1 layout found at $corpus_dir"
}

# ----------------------------------------------------------------------------- stages 1-6

recipe_preprocess() {  # corpus-name [extra preprocess.py options...]
  local corpus=$1
  shift
  recipe_require_cli preprocess
  local args=("--preset=$preset")
  [ -z "$hparams" ] || args+=("--hparams=$hparams")
  [ -z "$num_workers" ] || args+=("--num-workers=$num_workers")
  recipe_run "$PY" "$RECIPE_ROOT/preprocess.py" "${args[@]}" "$@" "$corpus" "$corpus_dir" "$data_dir"
  [ -f "$data_dir/meta.json" ] || recipe_die "preprocess.py finished but wrote no $data_dir/meta.json"
  recipe_log "data dir: $data_dir ($(wc -l < "$data_dir/train.txt" | tr -d ' ') train, $(wc -l < "$data_dir/dev.txt" | tr -d ' ') dev, $(wc -l < "$data_dir/eval.txt" | tr -d ' ') eval utterances)"
}

_recipe_need_data() {
  [ -f "$data_dir/meta.json" ] || recipe_die "no preprocessed data in $data_dir (no meta.json): run stage 1 first"
}

# Train (or continue training) one model. A minutes budget is a total over reruns: the seconds
# each run took are added up in <checkpoint-dir>/.recipe_seconds and the next run gets what is
# left, so an interrupted run continues for the rest of its budget and a finished one is a no-op.
recipe_train() {  # model checkpoint-dir max-steps max-minutes [extra hparams]
  local model=$1 dir=$2 steps=$3 minutes=$4 extra=${5:-}
  recipe_require_cli train
  _recipe_need_data
  local args=("--preset=$preset" "--model=$model" "--data-root=$data_dir" "--checkpoint-dir=$dir")
  local hp spent=0 left start rc=0 ckpt
  hp="$(_recipe_hparams_args "$extra")"
  [ -z "$hp" ] || args+=("$hp")
  [ -z "$steps" ] || args+=("--max-steps=$steps")
  [ -z "$num_workers" ] || args+=("--num-workers=$num_workers")
  mkdir -p "$dir"
  [ ! -f "$dir/.recipe_seconds" ] || spent="$(cat "$dir/.recipe_seconds")"
  if [ -n "$minutes" ] && [ "$minutes" != 0 ]; then
    left="$(awk -v m="$minutes" -v s="$spent" 'BEGIN { printf "%.2f", m - s / 60 }')"
    if awk -v l="$left" 'BEGIN { exit !(l < 0.05) }'; then
      ckpt="$(recipe_need_checkpoint "$dir" "$model" "train.py")"
      recipe_log "$model: its budget of $minutes min is spent ($(recipe_duration "$spent") over earlier runs); raise it to train longer. Checkpoint: $ckpt"
      return 0
    fi
    args+=("--max-minutes=$left")
  elif [ -n "$minutes" ]; then
    args+=("--max-minutes=0")
  fi
  start=$(date +%s)
  touch "$dir/.recipe_run_start"
  recipe_run "$PY" "$RECIPE_ROOT/train.py" "${args[@]}" || rc=$?
  # The time counts when the run finished, or saved progress before it failed (e.g. Ctrl-C);
  # a run that failed before its first checkpoint leaves the budget untouched.
  if [ "$rc" -eq 0 ] || [ -n "$(find "$dir" -maxdepth 1 -name 'checkpoint*' -newer "$dir/.recipe_run_start" | head -n 1)" ]; then
    echo $(( spent + $(date +%s) - start )) > "$dir/.recipe_seconds"
  fi
  rm -f "$dir/.recipe_run_start"
  [ "$rc" -eq 0 ] || exit "$rc"
  ckpt="$(recipe_need_checkpoint "$dir" "$model" "train.py")"
  recipe_log "$model checkpoint: $ckpt ($(recipe_duration "$(cat "$dir/.recipe_seconds")") of training runs so far); tensorboard --logdir $dir"
}

recipe_dump_gta() {
  recipe_require_cli synthesis
  _recipe_need_data
  local ckpt stamp key
  ckpt="$(recipe_need_checkpoint "$exp_dir/tacotron2" Tacotron-2 "stage 2")"
  stamp="$data_dir/gta/.done"
  key="$(recipe_fingerprint "$ckpt" "$data_dir/train.txt" "$data_dir/dev.txt" "$data_dir/eval.txt")"
  if recipe_stamp_ok "$stamp" "$key"; then
    recipe_log "GTA mels in $data_dir/gta are up to date with $ckpt: nothing to do"
    return 0
  fi
  recipe_run "$PY" "$RECIPE_ROOT/synthesis.py" "--tacotron2=$ckpt" --gta "--data-root=$data_dir"
  [ -d "$data_dir/gta" ] || recipe_die "synthesis.py --gta finished but wrote no $data_dir/gta"
  recipe_stamp_write "$stamp" "$key"
  recipe_log "GTA mels: $data_dir/gta ($(find "$data_dir/gta" -name '*.npy' | wc -l | tr -d ' ') files)"
}

recipe_train_wavenet() {
  local extra=""
  if [ "$vocoder_features" = gta ]; then
    [ -f "$data_dir/gta/.done" ] || recipe_die "no GTA mels in $data_dir/gta: run stage 3 first (or use --vocoder-features gt)"
    extra="train_wavenet.use_gta_mels=true"
  fi
  recipe_train wavenet "$exp_dir/wavenet_$vocoder_features" "$wavenet_max_steps" "$wavenet_max_minutes" "$extra"
}

# Default eval list: the first N utterances of <data_dir>/eval.txt, references from the data dir.
_recipe_default_eval_list() {  # out-dir limit
  _recipe_need_data
  recipe_run "$PY" "$RECIPE_ROOT/recipes/common/eval_list.py" --data-dir "$data_dir" --limit "$2" "$1"
}

_recipe_eval_list() {  # out-dir limit
  if declare -F recipe_eval_list >/dev/null; then recipe_eval_list "$1" "$2"
  else _recipe_default_eval_list "$1" "$2"; fi
  [ -s "$1/texts.txt" ] || recipe_die "the eval list $1/texts.txt is empty"
}

# Tacotron-2 + a vocoder over a `name|text` file, skipped when its stamp is current.
_recipe_synthesise() {  # texts out-dir tacotron2-ckpt (griffin-lim | wavenet-ckpt)
  local texts=$1 out=$2 t2=$3 vocoder=$4 key
  local extra=()
  [ -z "$synthesis_args" ] || read -r -a extra <<< "$synthesis_args"
  key="$(recipe_fingerprint "$texts" "$t2" "$vocoder"; printf '%s\n' "$synthesis_args")"
  if recipe_stamp_ok "$out/.done" "$key"; then
    recipe_log "$out is up to date: nothing to do"
    return 0
  fi
  mkdir -p "$out"
  local vocoder_arg=--griffin-lim
  [ "$vocoder" = griffin-lim ] || vocoder_arg="--wavenet=$vocoder"
  recipe_run "$PY" "$RECIPE_ROOT/synthesis.py" ${extra[@]+"${extra[@]}"} "--tacotron2=$t2" \
    "--text-file=$texts" "$vocoder_arg" "$out"
  recipe_stamp_write "$out/.done" "$key"
  recipe_log "wrote $(find "$out" -name '*.wav' | wc -l | tr -d ' ') wavs to $out"
}

recipe_synthesis() {
  recipe_require_cli synthesis
  local t2 wn syn="$exp_dir/synthesis"
  t2="$(recipe_need_checkpoint "$exp_dir/tacotron2" Tacotron-2 "stage 2")"
  wn="$(recipe_need_checkpoint "$exp_dir/wavenet_$vocoder_features" WaveNet "stage 4")"
  mkdir -p "$syn/fixed"
  _recipe_eval_list "$syn/eval" "$eval_limit"
  # WaveNet (slow on a CPU) vocodes the first wavenet_limit of the eval list; 0 means all of it.
  local n_wavenet="$eval_limit"
  if [ "$wavenet_limit" -ne 0 ] && { [ "$eval_limit" -eq 0 ] || [ "$wavenet_limit" -lt "$eval_limit" ]; }; then
    n_wavenet="$wavenet_limit"
  fi
  _recipe_eval_list "$syn/eval_wavenet" "$n_wavenet"
  if [ -n "$fixed_sentences" ]; then
    [ -f "$fixed_sentences" ] || recipe_die "--fixed-sentences: no file $fixed_sentences"
    awk 'NF { if (index($0, "|")) print; else printf "fixed-%02d|%s\n", ++n, $0 }' "$fixed_sentences" \
      > "$syn/fixed/texts.txt.tmp"
  else
    recipe_fixed_sentences > "$syn/fixed/texts.txt.tmp"
  fi
  mv "$syn/fixed/texts.txt.tmp" "$syn/fixed/texts.txt"
  recipe_log "eval list: $(wc -l < "$syn/eval/texts.txt" | tr -d ' ') sentences (WaveNet: $(wc -l < "$syn/eval_wavenet/texts.txt" | tr -d ' ')); fixed: $(wc -l < "$syn/fixed/texts.txt" | tr -d ' ')"
  _recipe_synthesise "$syn/eval/texts.txt" "$syn/eval/griffin_lim" "$t2" griffin-lim
  _recipe_synthesise "$syn/fixed/texts.txt" "$syn/fixed/griffin_lim" "$t2" griffin-lim
  _recipe_synthesise "$syn/eval_wavenet/texts.txt" "$syn/eval_wavenet/wavenet" "$t2" "$wn"
  _recipe_synthesise "$syn/fixed/texts.txt" "$syn/fixed/wavenet" "$t2" "$wn"
}

_recipe_evaluate_one() {  # name synth-dir ref-dir texts [griffin-lim]
  local name=$1 synth=$2 refs=$3 texts=$4 vocoder=${5:-} out="$exp_dir/metrics"
  [ -d "$synth" ] || recipe_die "nothing synthesised in $synth: run stage 5 first"
  local args=("--texts=$texts" "--out=$out/$name.json" "--alignments=$synth")
  [ "$wer" != true ] || args+=(--wer)
  # Griffin-Lim output is also scored against the references rendered through their own mels:
  # how much of the WER gap is the vocoder's (evaluate.py --help, WERgl).
  if [ "$wer" = true ] && [ "$vocoder" = griffin-lim ]; then args+=("--griffin-lim-ceiling=$preset"); fi
  recipe_show "$PY" "$RECIPE_ROOT/evaluate.py" "${args[@]}" "$synth" "$refs"
  "$PY" "$RECIPE_ROOT/evaluate.py" "${args[@]}" "$synth" "$refs" | tee "$out/$name.txt.tmp"
  mv "$out/$name.txt.tmp" "$out/$name.txt"
}

recipe_evaluate() {
  recipe_require_cli evaluate
  local syn="$exp_dir/synthesis"
  mkdir -p "$exp_dir/metrics"
  _recipe_evaluate_one griffin_lim "$syn/eval/griffin_lim" "$syn/eval/refs" "$syn/eval/texts.txt" griffin-lim
  _recipe_evaluate_one wavenet "$syn/eval_wavenet/wavenet" "$syn/eval_wavenet/refs" "$syn/eval_wavenet/texts.txt"
  recipe_log "metrics: $exp_dir/metrics/*.json (tables: *.txt)"
}

# ----------------------------------------------------------------------------- main

_recipe_output_line() {  # what path [note]: printed only when the path exists
  [ -e "$2" ] || return 0
  printf '  %-34s %s%s\n' "$1" "$2" "${3:+   ($3)}"
}

recipe_outputs() {
  local syn="$exp_dir/synthesis"
  printf '\n'
  recipe_log "outputs (so far):"
  _recipe_output_line "data dir" "$data_dir"
  _recipe_output_line "Tacotron-2 run" "$exp_dir/tacotron2" "checkpoints, hparams.json, tensorboard logs"
  _recipe_output_line "WaveNet run" "$exp_dir/wavenet_$vocoder_features" "checkpoints, hparams.json, tensorboard logs"
  _recipe_output_line "eval list, Tacotron-2 + Griffin-Lim" "$syn/eval/griffin_lim" "wavs, mels, alignment PNGs"
  _recipe_output_line "eval list, Tacotron-2 + WaveNet" "$syn/eval_wavenet/wavenet"
  _recipe_output_line "fixed sentences, Griffin-Lim" "$syn/fixed/griffin_lim"
  _recipe_output_line "fixed sentences, WaveNet" "$syn/fixed/wavenet"
  _recipe_output_line "references" "$syn/eval/refs"
  _recipe_output_line "metrics tables" "$exp_dir/metrics" "griffin_lim.txt, wavenet.txt; JSON next to them"
  if [ -d "$exp_dir/tacotron2" ] || [ -d "$exp_dir/wavenet_$vocoder_features" ]; then
    printf '  %-34s tensorboard --logdir %s\n' "training curves" "$exp_dir"
  fi
}

recipe_main() {
  recipe_parse_args "$@"
  if declare -F recipe_before_run >/dev/null; then recipe_before_run; fi
  recipe_resolve_paths corpus_dir data_dir exp_dir fixed_sentences
  _recipe_resolve_preset
  [ "$stage" -le "$stop_stage" ] || recipe_usage_error "--stage $stage is after --stop-stage $stop_stage"
  trap _recipe_on_exit EXIT
  cd "$RECIPE_ROOT" || exit 1
  recipe_log "$RECIPE_PROG: stages $stage..$stop_stage; corpus $corpus_dir; data $data_dir; exp $exp_dir; preset $preset${hparams:+; hparams $hparams}"
  if recipe_stage 0; then recipe_stage0; fi
  if recipe_stage 1; then recipe_stage1; fi
  if recipe_stage 2; then
    recipe_train tacotron2 "$exp_dir/tacotron2" "$tacotron2_max_steps" "$tacotron2_max_minutes"
  fi
  if recipe_stage 3; then
    if [ "$vocoder_features" = gta ]; then recipe_dump_gta
    else recipe_log "--vocoder-features gt: the WaveNet trains on real mels, no GTA mels needed"; fi
  fi
  if recipe_stage 4; then recipe_train_wavenet; fi
  if recipe_stage 5; then recipe_synthesis; fi
  if recipe_stage 6; then recipe_evaluate; fi
  _recipe_close_stage
  local total=$(( $(date +%s) - RECIPE_START ))
  printf '\n'
  recipe_log "finished stages $stage..$stop_stage in $(recipe_duration "$total"):"
  printf '%s' "$RECIPE_TIMINGS"
  [ "$stop_stage" -lt 1 ] || recipe_outputs
}
