#!/usr/bin/env bash
# The GPU paths in one go, for a machine with a CUDA GPU (CI has none): model throughput (eager and
# torch.compile), the demo on the GPU, fp16 training with a resume, Partial FC with AdamW under fp16 with a
# resume, a compiled training run, a one-process torchrun (NCCL, sync-bn), verify and embed on CUDA.
#   bash bench/cuda_check.sh [WORKDIR]      (logs to stdout; WORKDIR defaults to /tmp/facestra-cuda)
#   SKIP_DEMO=1 bash bench/cuda_check.sh    (a small synthetic set instead of the demo: about 3 minutes less)
set -u -o pipefail
W=${1:-/tmp/facestra-cuda}
rm -rf "$W"; mkdir -p "$W"
step() { echo; echo "=== $* ($(date +%T))"; }
step environment
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
step "model speed, batch 256, forward and training step: fp32 and bf16, eager then torch.compile"
for amp in none bf16; do
  python3 bench/model_speed.py --device cuda --batch 256 --repeats 10 --amp $amp
  python3 bench/model_speed.py --device cuda --batch 256 --repeats 10 --amp $amp --compile || echo "COMPILE BENCH FAILED rc=$?"
done
python3 bench/model_speed.py --device cuda --batch 256 --repeats 10 --amp bf16 --part stage4
if [ "${SKIP_DEMO:-0}" = 1 ]; then
  step "a small synthetic set, aligned to 48x48"
  facestra synth "$W/faces" --identities 900 --images-per-identity 6 --test-identities 60 --difficulty 0.85 >/dev/null
  facestra align "$W/faces" --out "$W/demo/aligned" --landmarks "$W/faces/landmarks.csv" --size 48 | tail -n 1
  cp "$W/faces/test/pairs.txt" "$W/demo/aligned/test/"
else
  step "demo on the GPU (1 minute per network)"
  facestra demo --workdir "$W/demo" --minutes 1 --json "$W/demo.json" --no-detector || echo "DEMO FAILED rc=$?"
fi
D="$W/demo/aligned"
COMMON=(--data "$D/train" --arch resnet50_stra --width 0.25 --input-size 48x48 --batch-size 128 --workers 4 --val "$D/test" --quiet)
step "train fp16 + channels-last, stopped after 40 steps, then resumed to 80"
facestra train "${COMMON[@]}" --out "$W/fp16" --amp fp16 --epochs 3 --max-steps 40 || echo "TRAIN FP16 FAILED rc=$?"
facestra train --resume "$W/fp16" --max-steps 80 --quiet || echo "RESUME FAILED rc=$?"
tail -n 2 "$W/fp16/metrics.jsonl"
step "train fp16 with Partial FC (--sample-rate 0.5) and AdamW, stopped after 20 steps, then resumed to 40"
facestra train "${COMMON[@]}" --out "$W/pfc_adamw" --amp fp16 --sample-rate 0.5 --optimizer adamw --lr 0.001 --epochs 3 \
  --max-steps 20 || echo "TRAIN PFC ADAMW FAILED rc=$?"
facestra train --resume "$W/pfc_adamw" --max-steps 40 --quiet || echo "RESUME PFC ADAMW FAILED rc=$?"
tail -n 1 "$W/pfc_adamw/metrics.jsonl"
step "train bf16 with --compile, 120 steps (step rates in metrics.jsonl)"
facestra train "${COMMON[@]}" --out "$W/compiled" --amp bf16 --compile --epochs 4 --max-steps 120 --log-every 20 \
  || echo "TRAIN COMPILE FAILED rc=$?"
grep '"step"' "$W/compiled/metrics.jsonl" | tail -n 3
step "torchrun, one process, NCCL, sync-bn, bf16"
python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m facestra train "${COMMON[@]}" --out "$W/ddp" \
  --amp bf16 --sync-bn --epochs 1 --max-steps 30 || echo "TORCHRUN FAILED rc=$?"
step "verify and embed on CUDA"
facestra verify --checkpoint "$W/fp16/model.pt" --data "$D/test" --device cuda --json "$W/verify.json" || echo "VERIFY FAILED rc=$?"
facestra embed "$D/test" --checkpoint "$W/fp16/model.pt" --out "$W/test.npy" --device cuda || echo "EMBED FAILED rc=$?"
python3 -c "import numpy as np, sys; e = np.load(sys.argv[1]); print('embeddings', e.shape, e.dtype, 'norms', np.linalg.norm(e, axis=1)[:3])" "$W/test.npy"
step done
