"""The Update step: our stacked low-rank hooks must equal PEFT's cat-merged adapters, and leave the base
weights bit-for-bit untouched; the merge weights."""
import copy

import pytest
import torch

from conftest import random_adapter, save_peft
from prag.update import Injector, merge_weights

TARGETS = ["gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [0.5, 0.3, 0.2]])
def test_update_equals_peft_cat_merge_and_restores_weights(tiny_lm, tmp_path, weights):
    from peft import PeftModel

    model = tiny_lm.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inj = Injector(model, TARGETS)
    ads = [random_adapter(inj, s) for s in range(3)]
    ids = torch.randint(3, 90, (2, 17))

    with torch.no_grad(), inj.applied(ads, weights):
        ours = model(input_ids=ids).logits
    base_logits = model(input_ids=ids).logits
    inj.remove()

    names = []
    for i, ad in enumerate(ads):
        save_peft(ad, tmp_path / f"a{i}")
        names.append(f"a{i}")
    peft_model = PeftModel.from_pretrained(copy.deepcopy(model), str(tmp_path / "a0"), adapter_name="a0")
    for n in names[1:]:
        peft_model.load_adapter(str(tmp_path / n), adapter_name=n)
    peft_model.add_weighted_adapter(names, weights, "merged", combination_type="cat")
    peft_model.set_adapter("merged")
    with torch.no_grad():
        ref = peft_model(input_ids=ids).logits

    assert not torch.allclose(ours, base_logits, atol=1e-3), "the adapters must change the output"
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"base weight {k} changed"
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base_logits)


def test_update_removed_after_exception(tiny_lm):
    inj = Injector(tiny_lm.model, TARGETS)
    ids = torch.randint(3, 90, (1, 9))
    with torch.no_grad():
        base = tiny_lm.model(input_ids=ids).logits
        with pytest.raises(RuntimeError):
            with inj.applied([random_adapter(inj, 0)]):
                raise RuntimeError("boom")
        assert torch.equal(tiny_lm.model(input_ids=ids).logits, base)
    inj.remove()


def test_merge_weights():
    assert merge_weights([3.0, 2.0, 1.0], "sum") == [1.0, 1.0, 1.0]
    assert merge_weights([3.0, 2.0], "mean") == [0.5, 0.5]
    w = merge_weights([3.0, 2.0, 1.0], "softmax", 1.0)
    assert abs(sum(w) - 1) < 1e-9 and w[0] > w[1] > w[2]
    assert merge_weights([1.0, 5.0], "top1") == [0.0, 1.0]
    assert merge_weights([], "sum") == []
    from prag import PragError

    with pytest.raises(PragError):
        merge_weights([1.0], "bogus")


def test_merge_weights_scale():
    assert merge_weights([1.0, 2.0, 3.0], "sum", scale=0.5) == [0.5, 0.5, 0.5]
    w = merge_weights([1.0, 2.0], "softmax", 1.0, scale=0.25)
    assert sum(w) == pytest.approx(0.25) and w[1] > w[0]
    assert merge_weights([1.0, 5.0], "top1", scale=2.0) == [0.0, 2.0]


def test_each_row_gets_its_own_adapters(tiny_lm):
    """apply_rows: row i's output is the one its own adapter set gives it alone (and a row with none, the base)."""
    inj = Injector(tiny_lm.model, TARGETS)
    ads = [random_adapter(inj, s) for s in range(3)]
    sets = [([ads[0]], [1.0]), ([ads[1], ads[2]], [0.5, 0.25]), ([], []), ([ads[2], ads[0]], [1.0, 0.0])]
    ids = torch.randint(3, 90, (len(sets), 11))
    with torch.no_grad():
        alone = []
        for (a, w), row in zip(sets, ids):
            with inj.applied(a, w):
                alone.append(tiny_lm.model(input_ids=row[None]).logits[0])
        with inj.lock:
            inj.apply_rows(sets)
            batched = tiny_lm.model(input_ids=ids).logits
            inj.clear()
        base = tiny_lm.model(input_ids=ids[2:3]).logits[0]
    for i, ref in enumerate(alone):
        assert torch.allclose(batched[i], ref, atol=1e-5), (i, (batched[i] - ref).abs().max())
    assert torch.allclose(batched[2], base, atol=1e-6), "a row with no adapters is the base model"
    assert not torch.allclose(alone[0], alone[1], atol=1e-3), "the sets must differ, or the test shows nothing"
    inj.remove()


def _wider(ad, name, extra, seed):
    """`ad` with module `name` given `extra` more rank (a translator's token memory is such an adapter)."""
    from prag.update import Adapter

    g = torch.Generator().manual_seed(seed)
    a, b = ad.factors[name]
    wide = (torch.cat([a, torch.randn(extra, a.shape[1], generator=g) * 0.1]),
            torch.cat([b, torch.randn(b.shape[0], extra, generator=g) * 0.1], 1))
    return Adapter({**ad.factors, name: wide}, ad.r, ad.alpha)


def test_an_adapter_whose_modules_differ_in_rank_applies_exactly(tiny_lm):
    """Per-module ranks (one module wider than r): the Update equals the weights with scaling·B·A added, alone,
    stacked with an ordinary adapter, and per row."""
    model = tiny_lm.model
    inj = Injector(model, TARGETS)
    down = [n for n in inj.modules if n.endswith("down_proj")][1]
    wide = _wider(random_adapter(inj, 0), down, 7, 1)
    plain = random_adapter(inj, 2)
    ids = torch.randint(3, 90, (2, 13))

    def materialised(ads, ws):
        m = copy.deepcopy(model)
        mods = dict(m.named_modules())
        with torch.no_grad():
            for ad, w in zip(ads, ws):
                for n, (a, b) in ad.factors.items():
                    mods[n].weight += w * ad.scaling * (b @ a)
            return m(input_ids=ids).logits

    with torch.no_grad():
        for ads, ws in (([wide], [1.0]), ([plain, wide], [0.5, 0.25])):
            with inj.applied(ads, ws):
                ours = model(input_ids=ids).logits
            assert torch.allclose(ours, materialised(ads, ws), atol=1e-5)
        with inj.lock:
            inj.apply_rows([([wide], [1.0]), ([plain], [1.0])])
            rows = model(input_ids=ids).logits
            inj.clear()
    ref_wide, ref_plain = materialised([wide], [1.0]), materialised([plain], [1.0])
    assert torch.allclose(rows[0], ref_wide[0], atol=1e-5) and torch.allclose(rows[1], ref_plain[1], atol=1e-5)
    assert not torch.allclose(ref_wide, materialised([random_adapter(inj, 0)], [1.0]), atol=1e-4), \
        "the extra rank must change the output, or the test shows nothing"
    inj.remove()


def test_a_wide_layer_does_not_widen_the_others_and_buffers_do_not_pile_up(tiny_lm):
    """A wide layer's extra columns stay with that layer: the group's stack keeps the shared rank (k·r), in the
    packed copy, the Update and per row, and one buffer pair per slot serves every rank (token-memory adapters
    make a new rank for nearly every question)."""
    inj = Injector(tiny_lm.model, TARGETS)
    names = [n for n in inj.modules if n.endswith("down_proj")]
    key = next(k for k in inj.groups if k[0] == "down_proj")
    for extra in (7, 3, 11, 5):
        wide = _wider(random_adapter(inj, 0), names[1], extra, 1)
        a, b, ex = wide.packed(inj)[key]
        assert a.shape[1] == b.shape[2] == 2 and list(ex) == [1] and ex[1][0].shape[0] == extra
        inj.apply([wide, random_adapter(inj, 2)])
        a, b, ex = inj.active[key]
        assert a.shape[1] == 4 and list(ex) == [1] and ex[1][0].shape[0] == extra  # layer 0: 2 + 2; layer 1: + extra
        inj.clear()
        with inj.lock:
            inj.apply_rows([([wide], [1.0]), ([random_adapter(inj, 2)], [1.0])])
            a, b, ex = inj.active[key]
            assert a.shape[:3] == (len(names), 2, 2) and ex[1][0].shape == (2, extra, key[1])
            assert not ex[1][0][1].any(), "the row without the wide layer gets zeros there"
            inj.clear()
    assert len(inj._buffers) == len(inj.groups) + 1                     # the groups, and layer 1's extra columns
    inj.remove()


def test_the_packed_copy_costs_the_factors_not_a_padding(tiny_lm):
    """A translator's token memory in one layer of many: the packed copy (what an adapter cache budgets) grows by
    that layer's columns, not by every layer's, and `footprint` predicts `nbytes` after an Update."""
    inj = Injector(tiny_lm.model, TARGETS)
    names = [n for n in inj.modules if n.endswith("down_proj")]
    plain = random_adapter(inj, 0)
    wide = _wider(plain, names[1], 40, 1)
    for ad in (plain, wide):
        inj.apply([ad])
        inj.clear()
        assert ad.nbytes() == ad.footprint()
    d_in, d_out = inj.modules[names[1]].in_features, inj.modules[names[1]].out_features
    assert wide.nbytes() - plain.nbytes() == 40 * (d_in + d_out) * 4        # the factors' columns, no copy of them
    inj.remove()
    half = Injector(copy.deepcopy(tiny_lm.model).to(torch.bfloat16), TARGETS)  # the extra columns are copies there
    for ad in (_wider(plain, names[1], 40, 1), _wider(plain, names[1], 7, 2)):
        with half.applied([ad]):
            pass
        assert ad.nbytes() == ad.footprint(torch.bfloat16)
    half.remove()
