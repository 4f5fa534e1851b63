#!/usr/bin/env bash
# The offline testbed's domain generalisation table (the paper's Table 2 on the testbed): zero-shot, CoOp,
# CoOp_TextRefiner, CoCoOp, CoCoOp_TextRefiner, MaPLe and MaPLe_TextRefiner trained on testbed_shapes (all
# classes, 16 shots) with the shipped testbed CLIP and evaluated on its domain-shifted variants, 3 seeds,
# through the usual launchers (SOURCE=testbed_shapes), then parse_test_res.py --table xd. CPU.
#   bash scripts/testbed/xd.sh [TARGET ...]     (default: testbed_shapes_sketch testbed_shapes_clutter)
# Environment: SEEDS (default "1 2 3"), TRAINERS (default: all seven), DATA (default ./data),
#   OUTPUT (default ./output/testbed), PYTHON (default python).
# Finished runs are skipped, so an interrupted table resumes where it stopped; the table is written
# to $OUTPUT/xd_table.md and .csv.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export OUTPUT=${OUTPUT:-output/testbed}
export SOURCE=testbed_shapes
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(testbed_shapes_sketch testbed_shapes_clutter)
read -r -a seeds <<< "${SEEDS:-1 2 3}"
read -r -a trainers <<< "${TRAINERS:-ZeroshotCLIP CoOp CoOp_TextRefiner CoCoOp CoCoOp_TextRefiner MaPLe MaPLe_TextRefiner}"

# shell functions launch (trainer -> host and testbed config) and step (one logged step)
source "$here/common.sh"

mkdir -p "$OUTPUT/logs"
total=$(( ${#trainers[@]} * ${#seeds[@]} ))
n=0
start=$SECONDS
for trainer in "${trainers[@]}"; do
    read -r host cfg <<< "$(launch "$trainer")"
    for seed in "${seeds[@]}"; do
        n=$((n + 1))
        log="$OUTPUT/logs/xd-$SOURCE-$trainer-seed$seed.log"
        printf '[%d/%d] %s -> %s, %s seed %s ... ' "$n" "$total" "$SOURCE" "${targets[*]}" "$trainer" "$seed"
        export TRAINER=$trainer CFG=$cfg
        step "$log" bash "$repo/scripts/$host/xd_train.sh" "$seed"
        for target in "${targets[@]}"; do
            step "$log" bash "$repo/scripts/$host/xd_test.sh" "$target" "$seed"
        done
        echo "done ($(( SECONDS - start ))s elapsed)"
    done
done
unset TRAINER CFG
"${PYTHON:-python}" "$repo/parse_test_res.py" "$OUTPUT" --table xd --source "$SOURCE" --datasets "${targets[@]}" \
    --seeds "${seeds[@]}" --format markdown --save "$OUTPUT/xd_table.md" "$OUTPUT/xd_table.csv"
