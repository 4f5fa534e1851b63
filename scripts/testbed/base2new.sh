#!/usr/bin/env bash
# The offline testbed's base-to-novel table (README, "Offline testbed"): zero-shot, CoOp, CoOp_TextRefiner,
# CoCoOp, CoCoOp_TextRefiner, MaPLe and MaPLe_TextRefiner on the testbed datasets with the shipped testbed CLIP, 3 seeds, through
# the usual launchers, then parse_test_res.py. CPU; about half an hour on 2 cores.
#   bash scripts/testbed/base2new.sh [DATASET ...]     (default: testbed_shapes testbed_patterns)
# Environment: SEEDS (default "1 2 3"), TRAINERS (default: all seven), DATA (default ./data),
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
read -r -a trainers <<< "${TRAINERS:-ZeroshotCLIP CoOp CoOp_TextRefiner CoCoOp CoCoOp_TextRefiner MaPLe MaPLe_TextRefiner}"

# trainer -> "host cfg": the testbed configs of configs/trainers/<trainer>/
launch() {
    case "$1" in
        ZeroshotCLIP) echo "coop testbed" ;;
        CoOp|CoOp_TextRefiner) echo "coop testbed_ep10_ctxv1" ;;
        CoCoOp|CoCoOp_TextRefiner) echo "cocoop testbed_c4_ep10_batch1_ctxv1" ;;
        MaPLe|MaPLe_TextRefiner) echo "maple testbed_c2_ep5_batch4_2ctx" ;;
        *) echo "scripts/testbed/base2new.sh: no testbed config for trainer $1" >&2; exit 2 ;;
    esac
}

# one step; its output goes to a log file, shown (the end of it) only when the step fails
step() {
    local log=$1; shift
    if ! "$@" >> "$log" 2>&1; then
        echo "FAILED: $*" >&2
        tail -n 25 "$log" >&2
        echo "(whole log: $log)" >&2
        exit 1
    fi
}

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
            export TRAINER=$trainer CFG=$cfg
            step "$log" bash "$repo/scripts/$host/base2new_train.sh" "$dataset" "$seed"
            step "$log" bash "$repo/scripts/$host/base2new_test.sh" "$dataset" "$seed"
            echo "done ($(( SECONDS - start ))s elapsed)"
        done
    done
done
unset TRAINER CFG
"${PYTHON:-python}" "$repo/parse_test_res.py" "$OUTPUT" --table base2new --datasets "${datasets[@]}" \
    --seeds "${seeds[@]}" --format markdown --save "$OUTPUT/base2new_table.md" "$OUTPUT/base2new_table.csv"
