#!/usr/bin/env bash
# Prepare THIS checkout for benchmarks/gpu_check.py on a lent device machine, then print the one command to run
# there. Run once, here, from the repo root:   bash benchmarks/gpu_check_prepare.sh [SHARED_DIR]
#
# Why: a device call sends this checkout only. A shared/ folder inside it travels, the ../shared beside it does
# not; and the device image (python3 3.12, its own torch) lacks pydantic and diskcache, which travel as wheels in
# .whl/ (named in the call's `carry`). Both folders are git-ignored locally (.git/info/exclude), never committed.
# About 38 MB travel besides the repo (the working tree's limit is 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared}
[ -d "$src/data" ] || src=/work/shared
exclude="$(git rev-parse --git-common-dir)/info/exclude"
for p in /shared/ /.whl/; do grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"; done

mkdir -p shared/data shared/tools
cp -u "$src/data/cifar10_subset.npz" "$src/data/cifar10_jpeg.npz" shared/data/
cp -u "$src/tools/decode_cifar10.py" shared/tools/

# the versions this project is tested with; --no-deps: each needed one is named
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  pydantic==2.13.4 pydantic_core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 \
  typing_extensions==4.16.0 diskcache==5.6.3
du -sh shared .whl

cat <<'EOF'
Ready. On the device (run tool): carry [".whl"], timeout_s 590, command:

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit; set -o pipefail; python3 benchmarks/gpu_check.py --device cuda --workdir /tmp/gc --full-cifar /tmp/cifar10_full.npz --out $OUT/gpu_check_cuda.json 2>&1 | tee $OUT/gpu_check.log; rc=$?; cp /tmp/gc/bench/bench.log $OUT/ 2>/dev/null; exit $rc

Then copy its gpu_check_cuda.json to benchmarks/results/ and commit it.
EOF
