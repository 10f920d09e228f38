#!/usr/bin/env bash
# Download the wheels benchmarks/gpu_run.sh installs on a GPU machine that reaches no package
# index: what vidscale needs and the machine's image lacks, at the versions this repository is
# tested with. Its image has Python 3.12, torch, transformers, safetensors, einops, click, tqdm,
# numpy, pillow, regex, huggingface-hub and pytest; not diffusers, PyAV, ftfy (and its wcwidth) or
# watchdog. setuptools comes too: it builds vidscale there (pyproject's license field needs >= 77).
#
#   benchmarks/gpu_wheels.sh [DEST [PYTHON_VERSION]]    # default: .whl (git-ignored) and 3.12
#
# PyAV and wcwidth are abi3 wheels, the others pure Python: the same files serve 3.11 and 3.12.
# The wheels travel with the working tree; the two together must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.whl}
version=${2:-3.12}
python=${PYTHON:-python3}
pins=(diffusers==0.42.1 av==18.1.0 ftfy==6.3.1 wcwidth==0.9.4 watchdog==7.1.1 setuptools==84.2.1)
limit=$((64 * 1024 * 1024))

mkdir -p "$dest"
for pin in "${pins[@]}"; do
    rm -f "$dest/${pin%%==*}"-*.whl  # two versions of one package stop the whole install
done
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" "${pins[@]}"
wheels=$(du -cb "$dest"/*.whl | tail -n 1 | cut -f 1)
tree=$(git ls-files -z | xargs -0 du -cb | tail -n 1 | cut -f 1)
echo "$dest: $(ls "$dest"/*.whl | wc -l) wheels, $((wheels / 1024 / 1024)) MiB; tracked files $((tree / 1024 / 1024)) MiB; together $(((wheels + tree) / 1024 / 1024)) of 64 MiB"
if [ $((wheels + tree)) -gt "$limit" ]; then
    echo "gpu_wheels.sh: the wheels and the tree are over 64 MiB together" >&2
    exit 1
fi
