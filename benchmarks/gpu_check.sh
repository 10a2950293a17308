#!/usr/bin/env bash
# Every `gpu`-marked test, then probe features on CPU vs GPU (fp32 and TF32) on the tiny
# synthetic world, on a GPU machine whose python3 already has torch. Run from the repo
# root; pydantic & co. may come as wheels in .whl/ (see the device tool's notes).
# Writes its logs under ${OUT:-/tmp/gpu-check}.
set -uo pipefail
OUT="${OUT:-/tmp/gpu-check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 SSLC_CACHE_DIR=/tmp/sslc-gpu-cache
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 \
  || { cat "$OUT/install.log"; exit 1; }
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.log"
status=${PIPESTATUS[0]}
# ALOI alone: the device image has opencv without contrib and no decord, which other parts use.
if root=$(python3 -m ssl_core.cli data synthesize --size tiny --parts aloi --json 2>"$OUT/synthesize.log" \
          | python3 -c "import json,sys; print(json.load(sys.stdin)['root'])"); then
  for dev in cpu cuda "cuda --allow-tf32"; do
    name=$(echo "$dev" | tr -d ' -')
    python3 -m ssl_core.cli probe --checkpoint random:resnet50 --probe aloi-viewpoint \
      --data "$root" --device $dev --no-cache --resamples 0 --json >"$OUT/probe_$name.json"
  done
  python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = {n: json.load(open(f"{out}/probe_{n}.json"))["probes"][0] for n in ("cpu", "cuda", "cudaallowtf32")}
for n, r in rows.items():
    print(f"{n:>14}: top10 {r['top10']:.4f} top25 {r['top25']:.4f}")
PY
else
  echo "synthesize failed, probe comparison skipped:"; tail -5 "$OUT/synthesize.log"; status=1
fi
# Data pipeline (issue 8): the loaders on this machine's CPUs, then the end-to-end bar:
# Trainer.fit on real JPEGs vs the bare step, ResNet-50 224 px batch 256 AMP, 15 workers.
python3 benchmarks/bench_pipeline.py --images 1024 --batch 64 --workers 15 --warmup 30 --batches 30 \
  --rounds 1 --dir /tmp/sslc-bench-500x375-2560 2>&1 | tee "$OUT/bench_pipeline.log"
timeout 420 python3 benchmarks/bench_train_e2e.py --device cuda --arch resnet50 --size 224 --batch 256 \
  --amp --augment-on gpu cpu --workers 15 --warmup 30 --steps 60 --images 2560 \
  --dir /tmp/sslc-bench-500x375-2560 --bar 0.85 2>&1 | tee "$OUT/bench_train_e2e.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit $status
