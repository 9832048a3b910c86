#!/usr/bin/env bash
# The GPU paths in one go, for a machine with a CUDA GPU (CI has none): model throughput, the demo on the GPU,
# fp16 training with a resume, a one-process torchrun (NCCL, sync-bn), verify and embed on CUDA.
#   bash bench/cuda_check.sh [WORKDIR]      (everything is logged to stdout; WORKDIR defaults to /tmp/facestra-cuda)
set -u -o pipefail
W=${1:-/tmp/facestra-cuda}
rm -rf "$W"; mkdir -p "$W"
step() { echo; echo "=== $* ($(date +%T))"; }
step environment
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
step "model speed, bf16 autocast, batch 256"
python3 bench/model_speed.py --device cuda --batch 256 --repeats 10
step "demo on the GPU (1 minute per network)"
facestra demo --workdir "$W/demo" --minutes 1 --json "$W/demo.json" --no-detector || echo "DEMO FAILED rc=$?"
D="$W/demo/aligned"
COMMON=(--data "$D/train" --arch resnet50_stra --width 0.25 --input-size 48x48 --batch-size 128 --workers 4 --val "$D/test" --quiet)
step "train fp16 + channels-last, stopped after 40 steps, then resumed to 80"
facestra train "${COMMON[@]}" --out "$W/fp16" --amp fp16 --epochs 3 --max-steps 40 || echo "TRAIN FP16 FAILED rc=$?"
facestra train --resume "$W/fp16" --max-steps 80 --quiet || echo "RESUME FAILED rc=$?"
tail -n 2 "$W/fp16/metrics.jsonl"
step "torchrun, one process, NCCL, sync-bn, bf16"
python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m facestra train "${COMMON[@]}" --out "$W/ddp" \
  --amp bf16 --sync-bn --epochs 1 --max-steps 30 || echo "TORCHRUN FAILED rc=$?"
step "verify and embed on CUDA"
facestra verify --checkpoint "$W/fp16/model.pt" --data "$D/test" --device cuda --json "$W/verify.json" || echo "VERIFY FAILED rc=$?"
facestra embed "$D/test" --checkpoint "$W/fp16/model.pt" --out "$W/test.npy" --device cuda || echo "EMBED FAILED rc=$?"
python3 -c "import numpy as np, sys; e = np.load(sys.argv[1]); print('embeddings', e.shape, e.dtype, 'norms', np.linalg.norm(e, axis=1)[:3])" "$W/test.npy"
step done
