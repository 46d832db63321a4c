#!/usr/bin/env bash
# swt on a Dask cluster: a scheduler and two workers (here all on 127.0.0.1), then
#   swt fold ... --scheduler tcp://HOST:PORT
# Workers read the input and write their blocks of the Zarr output themselves; the client only
# plans, submits and shows progress. Needs: pip install 'swt-cli[dask]'.
#
#   bash examples/dask_cluster.sh                # demo data in a temporary folder, checked
#   bash examples/dask_cluster.sh IN OUT.zarr    # your data (paths the workers can read)
#
# On a real cluster the scheduler and workers run on other nodes (dask scheduler / dask worker on each,
# or dask-jobqueue's SLURMCluster/PBSCluster, or Kubernetes), and the paths must be on a shared file
# system. `--scheduler scheduler.json` takes a scheduler file instead of an address;
# `--scheduler local:N` starts N worker processes on this machine without any of this.
set -euo pipefail

SWT=${SWT:-swt}
DASK=${DASK:-dask}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
cleanup() {  # workers first, while the scheduler can still hear them leave
    if [[ -n "${workers:-}" ]]; then kill $workers 2>/dev/null || true; wait $workers 2>/dev/null || true; fi
    if [[ -n "${scheduler:-}" ]]; then kill "$scheduler" 2>/dev/null || true; wait "$scheduler" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A scheduler on the loopback, port chosen by the system, address in a scheduler file.
"$DASK" scheduler --host 127.0.0.1 --port 0 --no-dashboard --dashboard-address 127.0.0.1:0 \
    --scheduler-file "$work/scheduler.json" >"$work/scheduler.log" 2>&1 &
scheduler=$!
for _ in $(seq 100); do [[ -s "$work/scheduler.json" ]] && break; sleep 0.1; done
address=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["address"])' "$work/scheduler.json")
echo "scheduler at $address"
workers=""
for name in w1 w2; do
    "$DASK" worker "$address" --name "$name" --host 127.0.0.1 --nthreads 1 --nworkers 1 --no-dashboard \
        --dashboard-address 127.0.0.1:0 --local-directory "$work" >"$work/$name.log" 2>&1 &
    workers="$workers $!"
done

if [[ $# -ge 2 ]]; then
    "$SWT" fold "$1" "$2" "${@:3}" --scheduler "$address"
    exit
fi

python - "$here/image.npy" "$work/images.npy" <<'PY'
import sys, numpy as np
image = np.load(sys.argv[1])
rng = np.random.default_rng(0)
np.save(sys.argv[2], (image + rng.normal(0, 0.05, (24,) + image.shape[1:])).astype(np.float32))
PY
"$SWT" unfold "$work/images.npy" "$work/windows.zarr" -k 16 -s 8 -p 4 --quiet
"$SWT" fold "$work/windows.zarr" "$work/folded.zarr" --batch-size 2 --scheduler "$address"
"$SWT" info "$work/folded.zarr"
"$SWT" fold "$work/windows.zarr" "$work/local.npy" --quiet
python - "$work/folded.zarr" "$work/local.npy" <<'PY'
import json, os, sys, numpy as np, zarr
same = np.array_equal(zarr.open_array(sys.argv[1])[...], np.load(sys.argv[2]))
done = os.path.join(sys.argv[1], ".swt-done")
workers = sorted({json.load(open(os.path.join(done, n)))["worker"] for n in os.listdir(done)})
print("blocks written by the workers", ", ".join(workers), "- equal to the one-process fold:", same)
sys.exit(0 if same else 1)
PY
