#!/usr/bin/env bash
# Build (or update) mmport's virtual environment on the real OpenMMLab stack.
#
#   tools/setup_env.sh [VENV]        (default: .venv)
#
# Idempotent: a second run checks a stamp and returns in seconds. The slow
# part of a cold run is compiling mmcv's ops (about 12 minutes on 2 cores);
# the resulting wheel is kept in a wheelhouse keyed by the torch build it was
# compiled against ($MMPORT_WHEELHOUSE, default ~/.cache/mmport/wheels), so a
# new virtual environment reuses it. Where torch sees a GPU (or FORCE_CUDA=1
# with nvcc present), mmcv compiles its CUDA ops too.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${VENV:-$HERE/.venv}}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

# The exact versions of the OpenMMLab stack live in requirements/openmmlab.txt
# (pyproject.toml gives the ranges mmport accepts).
PINS="$HERE/requirements/openmmlab.txt"
pin() {
  local version
  version="$(sed -n "s/^$1==\([^[:space:]#]*\).*/\1/p" "$PINS")"
  [[ -n "$version" ]] || { echo "[setup] no '$1==VERSION' line in $PINS" >&2; return 1; }
  echo "$version"
}
TORCH_VERSION="$(pin torch)"
TORCHVISION_VERSION="$(pin torchvision)"
MMENGINE_VERSION="$(pin mmengine)"
MMCV_VERSION="$(pin mmcv)"
MMDET_VERSION="$(pin mmdet)"
MMPOSE_VERSION="$(pin mmpose)"
XTCOCOTOOLS_VERSION="$(pin xtcocotools)"

stamp_inputs() {
  cat "$HERE/tools/setup_env.sh" "$HERE/requirements/"*.txt "$HERE/pyproject.toml"
}
STAMP="$VENV/.mmport-setup-stamp"
WANT="$(stamp_inputs | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && "$VENV/bin/python" -c "import mmport, mmpose.models" 2>/dev/null; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

log() { echo "[setup $(date +%H:%M:%S)] $*"; }
[[ -x "$VENV/bin/python" ]] || { log "creating $VENV with $PYTHON"; "$PYTHON" -m venv "$VENV"; }
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

# torch 2.14 needs setuptools>=77.0.3 and mmcv's setup.py needs
# pkg_resources, which setuptools 81 removed: 80.9.0 satisfies both.
SETUPTOOLS="setuptools==80.9.0"
log "build tools"
"${PIP[@]}" --upgrade "pip>=24" "$SETUPTOOLS" wheel ninja

log "torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (PyPI's pair; runs on CPU, uses a GPU if present)"
"${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "$SETUPTOOLS"

log "runtime, test and deployment requirements"
"${PIP[@]}" -r "$HERE/requirements/runtime.txt" -r "$HERE/requirements/tests.txt" \
  -r "$HERE/requirements/deploy.txt" "$SETUPTOOLS"
"${PIP[@]}" --no-deps "mmengine==$MMENGINE_VERSION"

# One wheelhouse per torch build: pip's own wheel cache does not key on the
# torch that an extension was compiled against.
TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "-"))')"
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null || [[ "${FORCE_CUDA:-0}" == 1 ]]; then
  TORCH_TAG="$TORCH_TAG-cudaops"
else
  TORCH_TAG="$TORCH_TAG-cpuops"
fi
WHEELHOUSE="${MMPORT_WHEELHOUSE:-$HOME/.cache/mmport/wheels}/py$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')-torch-$TORCH_TAG"
mkdir -p "$WHEELHOUSE"

if ! ls "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
  log "compiling mmcv==$MMCV_VERSION with ops into $WHEELHOUSE (about 12 min on 2 cores, once)"
  SRC="$(mktemp -d)"
  "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary mmcv \
    --no-build-isolation "mmcv==$MMCV_VERSION" -d "$SRC"
  tar -xzf "$SRC/mmcv-$MMCV_VERSION.tar.gz" -C "$SRC"
  # torch >= 2.10 headers need C++20; mmcv 2.1.0's setup.py pins C++17.
  sed -i "s/-std=c++17/-std=c++20/g; s#/std:c++17#/std:c++20#g" "$SRC/mmcv-$MMCV_VERSION/setup.py"
  MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" -m pip wheel --disable-pip-version-check -q \
    --no-build-isolation --no-deps "$SRC/mmcv-$MMCV_VERSION" -w "$WHEELHOUSE"
  rm -rf "$SRC"
fi
if ! ls "$WHEELHOUSE"/xtcocotools-"$XTCOCOTOOLS_VERSION"-*.whl >/dev/null 2>&1; then
  # The published wheel was built against numpy 1 and crashes under numpy 2.
  log "building xtcocotools==$XTCOCOTOOLS_VERSION from its sdist against numpy 2"
  "$PY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps \
    --no-binary xtcocotools "xtcocotools==$XTCOCOTOOLS_VERSION" -w "$WHEELHOUSE"
fi
log "installing mmcv, xtcocotools, mmdet, mmpose (no deps: their needs are in requirements/)"
"${PIP[@]}" --no-deps --force-reinstall "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl "$WHEELHOUSE"/xtcocotools-"$XTCOCOTOOLS_VERSION"-*.whl
"${PIP[@]}" --no-deps "mmdet==$MMDET_VERSION" "mmpose==$MMPOSE_VERSION"

log "mmport (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e "$HERE"

"$PY" - <<'PY'
import torch, mmcv, mmcv.ops, mmpose.models, mmport  # noqa: F401
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
print(f"[setup] torch {torch.__version__}, mmcv {mmcv.__version__} (compiled ops ok), "
      f"mmpose {mmpose.__version__}, mmport {mmport.__version__}")
PY
echo "$WANT" > "$STAMP"
log "done"
