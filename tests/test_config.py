"""The config: defaults <- TOML <- flags, validated in one place; model defaults from the registry; recipe keys."""
import pytest

from prag.config import PragConfig, build_config, default_config, recipe_key
from prag.errors import PragError
from prag.models import LOCAL_DEFAULTS


def test_defaults_then_toml_then_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[lora]\nepochs = 2\nlr = 0.01\n[generation]\nscale = 0.5\n")
    cfg = build_config("smollm2", "default", toml, {"lora.epochs": 3, "generation.merge": None})
    assert (cfg.lora.epochs, cfg.lora.lr, cfg.generation.scale) == (3, 0.01, 0.5)  # flag > TOML > default
    assert cfg.generation.merge == "softmax" and cfg.augment.augmenter == "rule"  # SmolLM2's registry defaults


def test_model_defaults_come_from_the_registry(tiny_model_dir):
    assert default_config("gemma3-270m").lora.lr == 1e-3 and default_config("smollm2").lora.lr == 3e-3
    assert default_config(str(tiny_model_dir)).lora.lr == LOCAL_DEFAULTS["lora"]["lr"]
    paper = default_config("smollm2", "paper")
    assert (paper.lora.lr, paper.lora.epochs, paper.lora.layout, paper.generation.merge) == (3e-4, 1, "concat", "sum")


@pytest.mark.parametrize("model, preset, needle", [
    ("smollm3", "default", "unknown model 'smollm3'"),
    ("/no/such/model.gguf", "default", "unknown model"),
    ("smollm2", "fast", "unknown preset 'fast'"),
])
def test_unknown_model_or_preset_is_an_error(model, preset, needle):
    with pytest.raises(PragError, match=needle):
        default_config(model, preset)


@pytest.mark.parametrize("flags, needle", [
    ({"lora.r": 0}, "lora.r must be at least 1"),
    ({"lora.alpha": -1.0}, "lora.alpha must be a finite number > 0"),
    ({"lora.lr": float("nan")}, "lora.lr must be a finite number >= 0"),
    ({"lora.epochs": 0}, "lora.epochs must be at least 1"),
    ({"lora.target_modules": []}, "lora.target_modules"),
    ({"lora.layout": "mixed"}, "unknown lora.layout 'mixed'"),
    ({"lora.loss": "some"}, "unknown lora.loss 'some'"),
    ({"lora.batch_docs": 0}, "lora.batch_docs and lora.batch_tokens must be at least 1"),
    ({"lora.adapter_dtype": "float64"}, "unknown adapter dtype 'float64'"),
    ({"lora.train_dtype": "int8"}, "unknown train dtype 'int8'"),
    ({"lora.init_from": "/no/such/warmup"}, "no adapter_model.safetensors"),
    ({"augment.n_qa": -1}, "augment.n_qa must be at least 0"),
    ({"augment.augmenter": "magic"}, "unknown augmenter 'magic'"),
    ({"augment.parts": "all"}, "unknown augment.parts 'all'"),
    ({"augment.augmenter": "reference"}, "needs augment.reference"),
    ({"augment.concurrency": 0}, "concurrency must be at least 1"),
    ({"retrieval.top_k": 0}, "retrieval.top_k must be at least 1"),
    ({"retrieval.backend": "faiss"}, "unknown retriever 'faiss'"),
    ({"generation.merge": "ties"}, "unknown merge 'ties'"),
    ({"generation.scale": -0.5}, "generation.scale must be a finite number >= 0"),
    ({"generation.scale": float("inf")}, "generation.scale must be a finite number >= 0"),
    ({"generation.temperature": 0.0}, "generation.temperature must be a finite number > 0"),
    ({"generation.backend": "vllm"}, "unknown backend 'vllm'"),
    ({"generation.max_new_tokens": 0}, "generation.max_new_tokens must be at least 1"),
    ({"generation.reasoning_tokens": 0}, "generation.reasoning_tokens must be at least 1"),
    ({"dynamic.qfs_tokens": 0}, "dynamic.qfs_tokens must be at least 1"),
    ({"lora.r": "2"}, "lora.r must be of type int"),
    ({"lora.epochs": 1.5}, "lora.epochs must be of type int"),
    ({"dynamic.flare_query_with_question": 1}, "must be of type bool"),
    ({"lora.rank": 2}, "unknown key lora.rank"),
    ({"training.lr": 1.0}, "unknown section 'training'"),
])
def test_every_bad_setting_is_one_clear_error(flags, needle):
    with pytest.raises(PragError, match=needle):
        default_config("smollm2").override(flags).validate_encoding()  # files: checked for encoding only


def test_override_returns_a_validated_copy():
    base = default_config("smollm2")
    new = base.override({"generation.scale": 1, "generation.backend": "transformers"})
    assert new.generation.scale == 1.0 and isinstance(new.generation.scale, float)  # int widened to float
    assert base.generation.scale == 0.25 and new is not base and new.lora is not base.lora


def test_toml_round_trip(tmp_path):
    cfg = default_config("gemma3-270m").override({"lora.init_from": None, "augment.model": "smollm2",
                                                  "generation.scale": 0.25})
    cfg.save_toml(tmp_path / "kb.toml")
    assert PragConfig.load_toml(tmp_path / "kb.toml").to_dict() == cfg.to_dict()


@pytest.mark.parametrize("text, needle", [("[lora\n", "not a valid TOML"), ("[lora]\nr = 'two'\n", "type int")])
def test_bad_toml_files(tmp_path, text, needle):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(PragError, match=needle):
        build_config("smollm2", "default", tmp_path / "c.toml")
    with pytest.raises(PragError, match="file not found"):
        build_config("smollm2", "default", tmp_path / "missing.toml")


def test_recipe_key_covers_what_adapters_depend_on():
    base = default_config("smollm2")
    assert recipe_key(base.override({"lora.batch_docs": 3, "augment.concurrency": 2,
                                     "generation.scale": 0.1})) == recipe_key(base)
    assert recipe_key(base.override({"lora.lr": 1e-3})) != recipe_key(base)
    assert recipe_key(base.override({"augment.n_qa": 2})) != recipe_key(base)


def test_recipe_keys_are_those_of_existing_kbs():
    # Keys the code before the config moved computed for these configs (kb manifests and eval logs written
    # then carry them: a changed key would make every old adapter look foreign and every logged row stale).
    assert recipe_key(default_config("smollm2")) == "56dfc5409aafb968"
    assert recipe_key(default_config("gemma3-270m")) == "6bfefa53d9ea463c"
    assert recipe_key(default_config("smollm2", "paper")) == "039029b67d2328e3"
