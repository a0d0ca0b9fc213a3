#!/usr/bin/env bash
# The GPU path measured (issue "Speed", item 4): the same benchmark as the README's table
# (bench/pipeline_speed.py: /identify p50 / p95 and its stages, enrolment, 1 / 4 / 16 clients) with the
# service on a lent GPU (PyTorch, bf16 autocast for the embedder), the same machine's CPU in the same
# run as the baseline (ONNX Runtime, as a CPU service without OpenVINO runs: its 59 MB wheel does not fit
# in what a device call carries, so that machine's CPU figures are ONNX Runtime's, not this CPU's
# default OpenVINO's), and the embedder alone at 1 / 8 / 64 faces per
# call (bench/embed_speed.py). Peers are left out (dlib is not on that machine).
#
# Here, once (PyPI reachable; it writes only git-ignored folders):
#   bash bench/gpu_speed.sh prepare
#     .gpu/whl/   the wheels of the service's dependencies the device image lacks (its python3 has torch,
#                 OpenCV, numpy, ONNX Runtime, httpx, ...: /work/.library/device/KINDS.md), at the
#                 versions of this machine's .venv (the ones the tests pass with), built for its Python 3.12
#     .gpu/data/  the benchmark's photos (../shared does not travel to the device machine)
# There (the device tool; ~6 min, so one call with room to spare):
#   run(command="bash bench/gpu_speed.sh", carry=[".gpu/whl", ".gpu/data"], timeout_s=540)
# Back: $OUT/pipeline_speed_gpu.json, $OUT/embed_speed_gpu.json, $OUT/machine.txt, $OUT/gpu_speed.log.
#
# Smoke test on this CPU (a few minutes; the wheels for this machine's Python, installed over a copy of
# what .venv has; prepare again without PYVER before carrying them):
#   PYVER=3.11 bash bench/gpu_speed.sh prepare
#   PY=.venv/bin/python DEVICE=cpu BASELINE= REPEATS=3 OUT=/tmp/gpu_speed bash bench/gpu_speed.sh
set -u
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
BASELINE=${BASELINE-cpu}
REPEATS=${REPEATS:-30}
WHEELS=(fastapi starlette pydantic pydantic-core pydantic-settings annotated-types typing-inspection
        typing-extensions python-dotenv uvicorn httptools python-multipart faiss-cpu sqlalchemy alembic mako
        facenet-pytorch fastapi-offline)

if [ "${1:-}" = prepare ]; then
  set -e
  rm -rf .gpu/data .gpu/whl && mkdir -p .gpu/whl .gpu/data/photos/known_people/knn_examples/test
  frozen=$(.venv/bin/python -m pip freeze)
  for name in "${WHEELS[@]}"; do
    # pip freeze spells names with - or _ and any case: match them all
    pin=$(grep -i -E "^${name//-/[-_.]}==" <<<"$frozen")
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 --platform any -d .gpu/whl "$pin"
  done
  data=$(.venv/bin/python -c "from training.config import data_root; print(data_root())")
  known=$data/photos/known_people/knn_examples  # only what pipeline_speed.py reads: the tree must stay under 64 MiB
  cp -r "$known/train" .gpu/data/photos/known_people/knn_examples/
  cp "$known/test/obama1.jpg" "$known/test/obama_and_biden.jpg" .gpu/data/photos/known_people/knn_examples/test/
  tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
  carried=$(du -sb .gpu/whl .gpu/data | awk '{s += $1} END {print s}')
  echo "working tree $tree + carried $carried = $((tree + carried)) bytes of the device tool's $((64 * 2**20))"
  exit 0
fi

OUT=${OUT:?set OUT to the folder that comes back}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_speed.log") 2>&1
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; $PY -c \
  "import torch, cv2, onnxruntime; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cv2', cv2.__version__, 'onnxruntime', onnxruntime.__version__)"
) 2>&1 | tee "$OUT/machine.txt"
echo "[$(date +%T)] embedder alone"
# The shared set's training crops are not here: the embedder is timed on a crop of the benchmark's photos.
$PY bench/embed_speed.py --weights models/weights/arcface_iresnet18_half_80_celeba.pt --device "$DEVICE" \
  --faces 1 8 64 --rounds 100 --crop-from .gpu/data/photos/known_people/knn_examples/test/obama1.jpg \
  --out "$OUT/embed_speed_gpu.json"
echo "[$(date +%T)] service"
$PY bench/pipeline_speed.py --data .gpu/data --device "$DEVICE" ${BASELINE:+--baseline-device "$BASELINE"} \
  --repeats "$REPEATS" --no-peers --out "$OUT/pipeline_speed_gpu.json"
echo "[$(date +%T)] done: exit $?"
