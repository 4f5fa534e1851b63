#!/usr/bin/env bash
# The offline testbed's base-to-novel table (README, "Offline testbed"): zero-shot, CoOp, CoOp_TextRefiner,
# CoCoOp, CoCoOp_TextRefiner, MaPLe, MaPLe_TextRefiner, PromptSRC, PromptKD and PromptKD_TextRefiner on the testbed
# datasets with the shipped testbed CLIP, 3 seeds, through the usual launchers, then parse_test_res.py. CPU; 1-2 hours
# on 2 cores. PromptSRC's row is the PromptKD teacher: scripts/promptkd/train_teacher.sh trains it per dataset
# and seed into $OUTPUT/teachers/seed<SEED> (PromptKD's trainers train it first when PromptSRC is not listed).
#   bash scripts/testbed/base2new.sh [DATASET ...]     (default: testbed_shapes testbed_patterns)
# Environment: SEEDS (default "1 2 3"), TRAINERS (default: all ten), DATA (default ./data),
#   OUTPUT (default ./output/testbed), PYTHON (default python).
# Finished runs are skipped, so an interrupted table resumes where it stopped; the table is written
# to $OUTPUT/base2new_table.md and .csv.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export OUTPUT=${OUTPUT:-output/testbed}
datasets=("$@")
[ "${#datasets[@]}" -gt 0 ] || datasets=(testbed_shapes testbed_patterns)
read -r -a seeds <<< "${SEEDS:-1 2 3}"
read -r -a trainers <<< "${TRAINERS:-ZeroshotCLIP CoOp CoOp_TextRefiner CoCoOp CoCoOp_TextRefiner MaPLe MaPLe_TextRefiner PromptSRC PromptKD PromptKD_TextRefiner}"

# shell functions launch (trainer -> host and testbed config) and step (one logged step)
source "$here/common.sh"

mkdir -p "$OUTPUT/logs"
total=$(( ${#datasets[@]} * ${#trainers[@]} * ${#seeds[@]} ))
n=0
start=$SECONDS
for dataset in "${datasets[@]}"; do
    for trainer in "${trainers[@]}"; do
        read -r host cfg <<< "$(launch "$trainer")"
        for seed in "${seeds[@]}"; do
            n=$((n + 1))
            log="$OUTPUT/logs/$dataset-$trainer-seed$seed.log"
            printf '[%d/%d] %s %s seed %s ... ' "$n" "$total" "$dataset" "$trainer" "$seed"
            case "$trainer" in
                PromptSRC|PromptKD*) teacher "$log" "$dataset" "$seed" ;;  # PromptSRC's training is the teacher step
            esac
            export TRAINER=$trainer CFG=$cfg TEACHER_DIR="$OUTPUT/teachers/seed{seed}"
            [ "$trainer" = PromptSRC ] || step "$log" bash "$repo/scripts/$host/base2new_train.sh" "$dataset" "$seed"
            step "$log" bash "$repo/scripts/$host/base2new_test.sh" "$dataset" "$seed"
            echo "done ($(( SECONDS - start ))s elapsed)"
        done
    done
done
unset TRAINER CFG TEACHER_DIR
"${PYTHON:-python}" "$repo/parse_test_res.py" "$OUTPUT" --table base2new --datasets "${datasets[@]}" \
    --seeds "${seeds[@]}" --format markdown --save "$OUTPUT/base2new_table.md" "$OUTPUT/base2new_table.csv"
