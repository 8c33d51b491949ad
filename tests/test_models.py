"""models.py: the Prompter's question prompt for chat and base (no chat template) models, with worked examples;
where bfloat16 is worth using."""
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_model_dir
from prag.generate import generate, question_message
from prag.models import INSTRUCTION, load_model


def test_base_model_prompt_and_single_line_answers(tmp_path):
    lm = load_model(str(make_tiny_model_dir(tmp_path / "base", chat=False)))
    assert not lm.prompter.chat
    prompt = lm.prompter.format(question_message("Where is Zorblax?"))
    assert prompt.startswith(lm.prompter.FEW_SHOT) and prompt.endswith("Question: Where is Zorblax?\nAnswer:")
    assert prompt.count(INSTRUCTION) == 0  # the few-shot header carries the instruction once
    out = generate(lm, prompt, max_new_tokens=12)
    assert "\n" not in out.rstrip("\n")  # generation stops at the first line break


def test_chat_model_prompt_uses_template(tiny_lm):
    prompt = tiny_lm.prompter.format(question_message("Where is Zorblax?"))
    assert prompt.startswith("<|user|>" + INSTRUCTION) and prompt.endswith("<|assistant|>")


def test_worked_examples_come_first_in_both_layouts(tmp_path, tiny_lm):
    shots = [(question_message("Which is older, A or B?"), "A"), (question_message("Who founded C?"), "Dana Roe")]
    chat = tiny_lm.prompter.format(question_message("Where is Zorblax?"), shots=shots)
    assert chat.index("Which is older") < chat.index("Dana Roe") < chat.index("Where is Zorblax?")
    assert chat.endswith("<|assistant|>") and chat.count("<|assistant|>") == 3  # two answered turns, then ours
    base = load_model(str(make_tiny_model_dir(tmp_path / "base", chat=False)))
    prompt = base.prompter.format(question_message("Where is Zorblax?"), shots=shots)
    assert base.prompter.FEW_SHOT not in prompt  # the dataset's examples replace the generic ones
    assert "Question: Which is older, A or B?\nAnswer: A\n\nQuestion: Who founded C?\nAnswer: Dana Roe\n\n" in prompt
    assert prompt.endswith("Question: Where is Zorblax?\nAnswer:") and prompt.count(INSTRUCTION) == 0


@pytest.mark.parametrize("flags, fast", [("fpu avx2 fma", False), ("avx2 avx512f avx512_bf16", True),
                                         ("avx2 amx_bf16 amx_tile", True), (None, False)])
def test_bf16_is_used_only_where_the_cpu_has_bf16_units(monkeypatch, flags, fast):
    from prag.models import fast_bf16

    def read(self, *a, **k):
        if flags is None:
            raise OSError("no /proc here")
        return f"processor : 0\nflags : {flags}\n"
    monkeypatch.setattr(Path, "read_text", read)
    assert fast_bf16(torch.device("cpu")) is fast


@pytest.mark.parametrize("capability, fast", [((7, 0), False), ((8, 0), True), ((9, 0), True)])
def test_bf16_on_a_gpu_needs_native_support(monkeypatch, capability, fast):
    from prag.models import fast_bf16

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert fast_bf16(torch.device("cuda")) is fast


@pytest.mark.parametrize("model, lr", [("smollm2", 3e-3), ("gemma3-270m", 1e-3)])
def test_an_untuned_kb_uses_the_worst_case_strength_for_every_registered_model(model, lr):
    """0.25 for both (docs/results.md, "Defaults without dev questions"): Gemma's Table-1 0.5 put P-RAG below
    closed-book on 2WQA dev with no worked examples."""
    from prag.config import default_config
    cfg = default_config(model)
    assert (cfg.generation.scale, cfg.generation.few_shot, cfg.lora.lr) == (0.25, 0, lr)
