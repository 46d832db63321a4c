#!/usr/bin/env bash
#SBATCH --job-name=swt-fold
#SBATCH --array=0-3
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=02:00:00
#SBATCH --requeue
#SBATCH --output=swt-fold-%A_%a.log
#
# Fold windows back into images as a SLURM array job: every task folds its share of the batch (first)
# axis into ONE shared Zarr output. Any task may start first; the output is created once, race-free.
#
#   sbatch examples/slurm_array.sh WINDOWS OUTPUT.zarr [swt fold options...]
#   sbatch --array=0-15 examples/slurm_array.sh windows.zarr images.zarr -k 16 -s 8 -p 4
#
# --shard auto reads SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT. --resume makes a requeued
# (preempted) task redo only the blocks it had not finished; on a fresh output it does everything.
# While tasks are missing, `swt info OUTPUT.zarr` says which batch rows are, and reading the output
# fails with the same list; rerun the missing tasks (sbatch --array=2 ...) to finish it.
#
# Without SLURM (here), the script runs the tasks itself, all at once, as SLURM would:
#
#   bash examples/slurm_array.sh                # demo data in a temporary folder, 4 tasks, checked
#   bash examples/slurm_array.sh IN OUT.zarr    # your data
set -euo pipefail

SWT=${SWT:-swt}
TASKS=${TASKS:-4}

if [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then   # one task of the array: its shard, then done
    exec "$SWT" fold "$1" "$2" "${@:3}" --shard auto --resume
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ $# -ge 2 ]]; then
    input=$1; output=$2; shift 2; options=("$@"); check=""
else
    work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
    echo "demo data in $work"
    # 24 noisy copies of the example photo, cut into 16x16 tiles (swt unfold records the geometry)
    python - "$here/image.npy" "$work/images.npy" <<'PY'
import sys, numpy as np
image = np.load(sys.argv[1])
rng = np.random.default_rng(0)
np.save(sys.argv[2], (image + rng.normal(0, 0.05, (24,) + image.shape[1:])).astype(np.float32))
PY
    "$SWT" unfold "$work/images.npy" "$work/windows.zarr" -k 16 -s 8 -p 4 --quiet
    input=$work/windows.zarr; output=$work/folded.zarr; options=(--batch-size 2); check=1
fi

pids=()
for ((task = 0; task < TASKS; task++)); do
    SLURM_ARRAY_TASK_ID=$task SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_COUNT=$TASKS \
        bash "${BASH_SOURCE[0]}" "$input" "$output" "${options[@]}" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
"$SWT" info "$output"
if [[ -n "$check" ]]; then   # the same as one process folding everything
    "$SWT" fold "$input" "$work/local.npy" --quiet "${options[@]}"
    python - "$output" "$work/local.npy" <<'PY'
import sys, numpy as np, zarr
same = np.array_equal(zarr.open_array(sys.argv[1])[...], np.load(sys.argv[2]))
print("sharded output equals the one-process fold:", same)
sys.exit(0 if same else 1)
PY
fi
exit $status
