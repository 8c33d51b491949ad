"""Prompting and answer extraction for chat and base (no chat template) models."""
from prag.generate import extract_answer, generate, question_message
from prag.models import INSTRUCTION, load_model

from conftest import make_tiny_model_dir


def test_extract_answer():
    assert extract_answer(" Paris.\n\nQuestion: next?") == "Paris"
    assert extract_answer("Answer: Jane Austen") == "Jane Austen"
    assert extract_answer("\n\nQuestion: Who wrote it?\n") == ""  # an echoed question is not an answer
    assert extract_answer("") == ""


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
