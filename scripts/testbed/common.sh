# Shared by scripts/testbed/base2new.sh and xd.sh (sourced, not run).

# trainer -> "host cfg": the testbed configs of configs/trainers/<trainer>/
launch() {
    case "$1" in
        ZeroshotCLIP) echo "coop testbed" ;;
        CoOp|CoOp_TextRefiner) echo "coop testbed_ep10_ctxv1" ;;
        CoCoOp|CoCoOp_TextRefiner) echo "cocoop testbed_c4_ep10_batch1_ctxv1" ;;
        MaPLe|MaPLe_TextRefiner) echo "maple testbed_c2_ep5_batch4_2ctx" ;;
        PromptSRC) echo "promptsrc testbed_c2_ep10_batch4_4+4ctx" ;;  # also the PromptKD teacher (teacher below)
        PromptKD|PromptKD_TextRefiner) echo "promptkd testbed_c2_ep5_batch8_4+4ctx" ;;
        *) echo "$(basename "$0"): no testbed config for trainer $1" >&2; exit 2 ;;
    esac
}

# the testbed's PromptKD teacher of DATASET and SEED: PromptSRC's testbed config, trained by the teacher step into
# $OUTPUT/teachers/seed<SEED> (never the user's TEACHER_DIR); skipped once written
teacher() {
    local log=$1 dataset=$2 seed=$3
    step "$log" env TRAINER=PromptSRC CFG="$(launch PromptSRC | cut -d' ' -f2)" TEACHER_DIR="$OUTPUT/teachers/seed{seed}" \
        bash "$repo/scripts/promptkd/train_teacher.sh" "$dataset" "$seed"
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
