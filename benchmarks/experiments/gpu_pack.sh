#!/usr/bin/env bash
# Packs what a run on the GPU machine (the `device` tool) needs and its image lacks, into .gpu/ (git-ignored):
#   .gpu/whl/    wheels of prag's dependencies missing there (gguf, bm25s, PyStemmer, tomli-w; Python 3.12)
#   .gpu/m1..m3/ SmolLM2's GGUF (94 MiB) cut in three: a call carries at most 64 MiB with the working tree
#   .gpu/data/   the translator's training documents (translator_data.py)
#   .gpu/datasets/ the shared datasets (../shared does not travel; 8 MB)
# Each call of `run` carries one part; the machine keeps ignored paths between calls while it is warm (30 s), so
# the three calls go back to back; gpu_env.sh, sourced there, sets up. benchmarks/README.md, "On the GPU
# machine", has the calls.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=.gpu
rm -rf $G/whl  # one version of each wheel (two stop the whole install there): the local venv's
mkdir -p $G/whl $G/m1 $G/m2 $G/m3 $G/data
PINS=$(.venv/bin/python -c "from importlib.metadata import version as v; print(' '.join(f'{p}=={v(p)}' for p in ('gguf', 'bm25s', 'PyStemmer', 'tomli-w')))")
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d $G/whl $PINS
GGUF=$(.venv/bin/python -c "from prag.models import MODELS; print(MODELS.get('smollm2').locate())")
rm -f $G/m?/part-*
split -n 3 -d "$GGUF" $G/part-
for i in 0 1 2; do mv $G/part-0$i $G/m$((i + 1))/; done
sha256sum "$GGUF" | cut -d' ' -f1 > $G/m3/sha256
grep -q '"generator": 2' runs/translator-data/sources.json 2>/dev/null ||  # made by this version of the generator
  .venv/bin/python benchmarks/experiments/translator_data.py --out runs/translator-data > /dev/null
cp runs/translator-data/{corpus.jsonl,qa.jsonl,sources.json} $G/data/
rm -rf $G/datasets && cp -r ../shared/datasets $G/datasets
du -sh $G/*
