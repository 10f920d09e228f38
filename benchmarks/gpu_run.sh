#!/usr/bin/env bash
# The GPU run in one command, on a machine that reaches no package index: install the carried
# wheels and this tree's vidscale into a private site folder, then run benchmarks/gpu_run.py
# (environment, the tests marked gpu, speed.py's jobs in order of value within --budget).
#
#   benchmarks/gpu_wheels.sh                       # once, where PyPI is reachable: fills .whl/
#   benchmarks/gpu_run.sh [gpu_run.py options]     # on the GPU machine, with .whl/ beside the tree
#
# Environment: WHEELS (default .whl), SITE (default /tmp/site), OUT (default out/), PYTHON
# (default python3). PYTHONPATH becomes the site folder alone, so what runs is these wheels and
# this tree's code over the machine's own packages (torch, transformers, ...), whatever else is
# installed. vidscale is built from the tree here, not carried as a wheel, so it is never stale;
# the carried setuptools builds it (pyproject's license field needs a recent one).
set -uo pipefail
started=$(date +%s)
cd "$(dirname "$0")/.."
wheels=${WHEELS:-.whl}
site=${SITE:-/tmp/site}
python=${PYTHON:-python3}
export OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"

shopt -s nullglob
carried=("$wheels"/*.whl)
if [ "${#carried[@]}" -eq 0 ]; then
    echo "gpu_run.sh: no wheels in $wheels/; run benchmarks/gpu_wheels.sh where PyPI is reachable and bring $wheels/ along" >&2
    exit 2
fi
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${carried[@]}" \
    || { echo "gpu_run.sh: installing the wheels of $wheels/ into $site failed (above)" >&2; exit 2; }
export PYTHONPATH="$site"
"$python" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade \
    --target "$site" . \
    || { echo "gpu_run.sh: building and installing vidscale from $PWD into $site failed (above)" >&2; exit 2; }
echo "gpu_run.sh: ${#carried[@]} wheels and vidscale installed into $site in $(($(date +%s) - started)) s"
exec "$python" benchmarks/gpu_run.py --started "$started" --out "$OUT" "$@"
