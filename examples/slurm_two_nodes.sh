#!/usr/bin/env bash
# losslines on two SLURM nodes with 4 GPUs each: torchrun on every node, one rendezvous.
#
#   sbatch examples/slurm_two_nodes.sh configs/paper_resnet20_sgd.toml s3://my-bucket/runs/resnet20.zarr
#
# MODE=sharded (default): one line at a time, the measurement sets split over all 8 GPUs
#                         (for a measurement set too big or too slow for one GPU).
# MODE=lines:             record the run on one GPU (cheap), then measure the recorded lines
#                         line-parallel on all 8 GPUs (the common case: many lines).
# Preemption: SLURM sends SIGTERM (here 120 s before the end, see --signal); losslines checkpoints
# between steps (or lines) and exits 130. Submit again with RESUME=1 to continue where it stopped.
#
#SBATCH --job-name=losslines
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one torchrun per node; it starts the 4 workers
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@120
#SBATCH --output=losslines-%j.log
set -euo pipefail

CONFIG=${1:?usage: sbatch examples/slurm_two_nodes.sh CONFIG STORE}
STORE=${2:?usage: sbatch examples/slurm_two_nodes.sh CONFIG STORE}
MODE=${MODE:-sharded}
RESUME=${RESUME:+--resume}
GPUS_PER_NODE=4

# the first node of the allocation hosts the rendezvous
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export OMP_NUM_THREADS=$((SLURM_CPUS_PER_TASK / GPUS_PER_NODE))
export LOSSLINES_DIST_TIMEOUT=${LOSSLINES_DIST_TIMEOUT:-1800}  # a dead worker fails the others after this
# a store on object storage: credentials come from the environment (AWS_*, GOOGLE_*), or from
# store.storage_options in the config

torchrun_all() {  # torchrun on every node of the job, all joining one rendezvous at $HEAD
  srun --kill-on-bad-exit=1 torchrun --nnodes="$SLURM_NNODES" --nproc_per_node="$GPUS_PER_NODE" \
    --rdzv_backend=c10d --rdzv_endpoint="$HEAD:29500" --rdzv_id="$SLURM_JOB_ID" -m losslines "$@"
}

if [ "$MODE" = sharded ]; then
  torchrun_all run "$CONFIG" --out "$STORE" --device cuda -q $RESUME
else
  RECORDING="${STORE%.zarr}.recording.zarr"
  # training is sequential: one process records (θ_t, the update, buffers and batch per line)
  if [ -z "$RESUME" ] || ! python -c "import sys; from losslines.runner.recording import RecordingReader as R
sys.exit(R(sys.argv[1]).attrs['status'] != 'complete')" "$RECORDING" 2>/dev/null; then
    srun --nodes=1 --ntasks=1 --gpus=1 python -m losslines run "$CONFIG" --out "$RECORDING" --device cuda -q \
      --set measure.mode=record $RESUME
  fi
  torchrun_all measure "$RECORDING" --out "$STORE" --device cuda -q $RESUME
fi
