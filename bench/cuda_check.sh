#!/usr/bin/env bash
# The GPU paths in one go, for a machine with a CUDA GPU (CI has none), most important first, each step under a
# time limit of its own so that one hang costs that step only:
#   1. StRA's written-out functions on CUDA against the float64 reference (tests/test_stra_computation.py),
#      then the whole test suite with the GPU visible;
#   2. arcface_torch's ms1mv3_r50 on synthetic data per precision, iresnet50 and resnet50_stra, beside
#      arcface_torch's published images/s (bench/preset_speed.py: issue 26, item 7);
#   3. model throughput, eager (and torch.compile with COMPILE=1), and the local attention's two forms;
#   4. fp16 training with a resume, Partial FC with AdamW under fp16 with a resume, a one-process torchrun
#      (NCCL, sync-bn), verify and embed on CUDA, ONNX export run by onnxruntime's CUDA provider where this
#      onnxruntime has one, and last a compiled training run.
#   bash bench/cuda_check.sh [WORKDIR]     (logs to stdout; WORKDIR defaults to /tmp/facestra-cuda)
# Never timed yet. ONLY=1,2 runs those steps alone (their limits add up to 9.5 minutes), ONLY=3,4 the rest;
# DEMO=1 runs `facestra demo` on the GPU instead of the small synthetic set of step 4.
set -u -o pipefail
W=${1:-/tmp/facestra-cuda}
ONLY=${ONLY:-1,2,3,4}
rm -rf "$W"; mkdir -p "$W"
step() { echo; echo "=== $* ($(date +%T))"; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
limit() { local seconds=$1; shift; timeout --kill-after 10 "$seconds" "$@"; local rc=$?; [ $rc = 0 ] || echo "FAILED rc=$rc: $*"; return 0; }

step environment
nvidia-smi -L
python3 -c "import facestra" 2>/dev/null || python3 -m pip install -q --no-deps --no-build-isolation -e . \
  || echo "INSTALL FAILED (pip install --no-deps --no-build-isolation -e .)"
python3 -c "import torch, facestra; print('torch', torch.__version__, torch.cuda.get_device_name(), 'facestra', facestra.__version__)"

if wants 1; then
  step "1. StRA on CUDA against the float64 reference, then the test suite with the GPU visible"
  limit 90 python3 -m pytest -q -p no:cacheprovider -rs tests/test_stra_computation.py -k "cuda or autocast"
  limit 180 python3 -m pytest -q -p no:cacheprovider -n 8 tests
fi

if wants 2; then
  step "2. --preset ms1mv3_r50 --data synthetic, batch 128, per precision (issue 26, item 7)"
  limit 300 python3 bench/preset_speed.py --steps 60
fi

if wants 3; then
  step "3. model speed, batch 256, forward and training step: fp32 and bf16 eager, stage 4 alone"
  for amp in none bf16; do limit 90 python3 bench/model_speed.py --device cuda --batch 256 --repeats 10 --amp $amp; done
  limit 60 python3 bench/model_speed.py --device cuda --batch 256 --repeats 10 --amp bf16 --part stage4
  step "3. the local attention's two forms on the GPU (the choice between them was measured on the CPU)"
  limit 90 python3 bench/local_attention_forms.py --device cuda --batch 128 --repeats 20
  if [ "${COMPILE:-0}" = 1 ]; then limit 300 python3 bench/model_speed.py --device cuda --batch 256 --repeats 10 --amp bf16 --compile; fi
fi

if wants 4; then
  if [ "${DEMO:-0}" = 1 ]; then
    step "4. demo on the GPU (1 minute per network)"
    limit 400 facestra demo --workdir "$W/demo" --minutes 1 --json "$W/demo.json" --no-detector
  else
    step "4. a small synthetic set, aligned to 48x48"
    facestra synth "$W/faces" --identities 900 --images-per-identity 6 --test-identities 60 --difficulty 0.85 >/dev/null
    facestra align "$W/faces" --out "$W/demo/aligned" --landmarks "$W/faces/landmarks.csv" --size 48 | tail -n 1
    cp "$W/faces/test/pairs.txt" "$W/demo/aligned/test/"
  fi
  D="$W/demo/aligned"
  COMMON=(--data "$D/train" --arch resnet50_stra --width 0.25 --input-size 48x48 --batch-size 128 --workers 4 --val "$D/test" --quiet)
  step "4. train fp16 + channels-last, stopped after 40 steps, then resumed to 80"
  limit 120 facestra train "${COMMON[@]}" --out "$W/fp16" --amp fp16 --epochs 3 --max-steps 40
  limit 120 facestra train --resume "$W/fp16" --max-steps 80 --quiet
  tail -n 2 "$W/fp16/metrics.jsonl"
  step "4. train fp16 with Partial FC (--sample-rate 0.5) and AdamW, stopped after 20 steps, then resumed to 40"
  limit 120 facestra train "${COMMON[@]}" --out "$W/pfc_adamw" --amp fp16 --sample-rate 0.5 --optimizer adamw --lr 0.001 \
    --epochs 3 --max-steps 20
  limit 120 facestra train --resume "$W/pfc_adamw" --max-steps 40 --quiet
  tail -n 1 "$W/pfc_adamw/metrics.jsonl"
  step "4. torchrun, one process, NCCL, sync-bn, bf16"
  limit 120 python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m facestra train "${COMMON[@]}" \
    --out "$W/ddp" --amp bf16 --sync-bn --epochs 1 --max-steps 30
  step "4. verify and embed on CUDA; ONNX export run by onnxruntime (its CUDA provider where it has one)"
  limit 120 facestra verify --checkpoint "$W/fp16/model.pt" --data "$D/test" --device cuda --json "$W/verify.json"
  limit 120 facestra embed "$D/test" --checkpoint "$W/fp16/model.pt" --out "$W/test.npy" --device cuda
  python3 -c "import numpy as np, sys; e = np.load(sys.argv[1]); print('embeddings', e.shape, e.dtype, 'norms', np.linalg.norm(e, axis=1)[:3])" "$W/test.npy"
  python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
  limit 120 facestra export "$W/fp16/model.pt" --onnx "$W/model.onnx"
  limit 120 facestra verify --checkpoint "$W/model.onnx" --data "$D/test" --device cuda --json "$W/verify_onnx.json"
  python3 -c "import json, sys; [print(p, json.load(open(p))['benchmarks']['test']['accuracy']) for p in sys.argv[1:]]" \
    "$W/verify.json" "$W/verify_onnx.json"
  step "4. (last: the slowest) train bf16 with --compile, 120 steps (step rates in metrics.jsonl)"
  limit 300 facestra train "${COMMON[@]}" --out "$W/compiled" --amp bf16 --compile --epochs 4 --max-steps 120 --log-every 20
  grep '"step"' "$W/compiled/metrics.jsonl" | tail -n 3
fi
step done
