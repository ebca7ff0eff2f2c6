#!/usr/bin/env bash
# kakusan-mini from nothing, timed (issue 4 item 9: <= 3 hours on the 2-core machine):
# the VAE (vae-scratch.toml), the feature-alignment teacher (teacher.toml: a classifier independent
# of the shipped evaluator), then text encoder + UNet (scratch.toml, or UNET_TOML) over that
# VAE with that teacher, then the held-out evaluation at the model's recommended settings
# (generation_defaults.json: CFG 2.5, Euler).
#
#   training/kakusan-mini/from_scratch.sh OUT_DIR
#
# Resumable: run it again with the same OUT_DIR after a kill and each stage continues from
# its last checkpoint. Every invocation appends each stage's wall seconds to OUT_DIR/times.csv
# (stage,seconds,step reached), so the total over sessions is the sum of that file (an
# invocation killed mid-stage logs nothing: then count that stage by its loss.csv clock,
# printed at the end, which resumes carry on).
# KAKUSAN (default target/release/kakusan) is the binary; VAE_STEPS / TEACHER_STEPS /
# UNET_STEPS stop a stage after that many more steps (a smoke test; the stage then stops
# short of its schedule). VAE_TOML (default vae-scratch.toml) and UNET_TOML (default scratch.toml)
# pick other configs for those stages: VAE_TOML's relative paths are read from its own
# folder, UNET_TOML's relative [model] paths from training/kakusan-mini (the awk below).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/training/kakusan-mini
OUT=${1:?usage: from_scratch.sh OUT_DIR}
BIN=${KAKUSAN:-$ROOT/target/release/kakusan}
UNET_TOML=${UNET_TOML:-$HERE/scratch.toml}
VAE_TOML=${VAE_TOML:-$HERE/vae-scratch.toml}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Runs a training stage, resuming when its folder exists, and logs its wall time.
stage() {
  local name=$1 kind=$2 config=$3 dir=$4 steps=$5
  local args=(train "$kind" --config "$config" --out "$dir")
  [ -d "$dir/checkpoints" ] && args+=(--resume)
  [ -n "$steps" ] && args+=(--steps "$steps")
  local t0 t1
  t0=$(date +%s)
  "$BIN" "${args[@]}"
  t1=$(date +%s)
  echo "$name,$((t1 - t0)),$(tail -1 "$dir/loss.csv" | cut -d, -f1)" >> "$OUT/times.csv"
}

stage vae vae "$VAE_TOML" "$OUT/vae-run" "${VAE_STEPS:-}"
stage teacher classifier "$HERE/teacher.toml" "$OUT/teacher-run" "${TEACHER_STEPS:-}"

# The UNet's TOML with its [model] paths made absolute, the VAE and the teacher of the
# stages above.
awk -v dir="$HERE" -v vae="$OUT/vae-run/vae" -v teacher="$OUT/teacher-run/model" '
  /^\[/ { section = $0 }
  section == "[model]" && $1 == "vae" { print "vae = \"" vae "\""; next }
  section == "[model]" && $1 == "feature_teacher" { print "feature_teacher = \"" teacher "\""; next }
  section == "[model]" && match($0, /^[a-z_]+ = "[^\/][^"]*"$/) {
    split($0, kv, " = \""); print kv[1] " = \"" dir "/" substr(kv[2], 1, length(kv[2]) - 1) "\""; next }
  { print }
' "$UNET_TOML" > "$OUT/unet.toml"
stage unet unet "$OUT/unet.toml" "$OUT/unet-run" "${UNET_STEPS:-}"

awk -F, '{ s += $2 } END { printf "wall time so far: %d s (%.2f h)\n", s, s / 3600 }' "$OUT/times.csv"
# The trainers' own clocks (loss.csv's last column, carried across resumes): they survive a
# kill, where times.csv misses the killed invocation's stage.
for run in vae teacher unet; do
  awk -F, -v run="$run" 'END { printf "%s: %.0f s of training by its loss.csv\n", run, $NF }' \
    "$OUT/$run-run/loss.csv"
done
# The model's recommended settings (an export without --init has none): CFG 2.5 and the
# deterministic Euler sampler, which drew glyphs 9 points better than Euler a on a
# part-trained model (session 19's note); `eval` then measures at these defaults. The scale
# was chosen on held-out prompt sets other than the target set (seeds 2 and 3, one-object
# glyphs): on fs30 (the shipped model, session 29) CFG 2 / 2.5 / 3 read 87.6 / 88.9 / 87.6 %
# and 87.5 / 87.5 / 87.5 %, colour 98.7 / 98.0 / 95.4 % and 100 / 97.2 / 95.1 %; the target
# set (seed 1) then read 85.1 % at 2.5 (84.5 % at 3). On fs29 (session 27) CFG 3 beat 4 on
# all three sets (84.5 / 86.9 / 88.2 % against 82.4 / 84.3 / 83.3 %) and seed 2 read CFG 2
# 84.3, 2.5 86.3, 6 79.7 %: between 2.5 and 3 the sets differ by a picture or two.
printf '{\n  "guidance_scale": 2.5,\n  "sampler": "Euler"\n}\n' \
  > "$OUT/unet-run/model/generation_defaults.json"
"$BIN" eval --model "$OUT/unet-run/model" --count 200 --grid "$OUT/eval-grid.png"
