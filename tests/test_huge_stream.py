"""Streaming saliency for transformers configs equals the in-memory computation (tiny configs)."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("transformers")

from yopo.core.calibration import mort, robust_stats  # noqa: E402
from yopo.core.family import load_mask  # noqa: E402
from yopo.integrations.hf_stream import (hf_config, in_memory_saliency, linear_specs, load_stream_scores, materialize,  # noqa: E402
                     stream_calibrate, stream_saliency)
from yopo.methods.yopo.saliency import YopoConfig  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


CFG = YopoConfig(iters=30)


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama"])
def test_stream_equals_in_memory(preset, tmp_path):
    config = hf_config(preset)
    man = stream_saliency(config, CFG, tmp_path, seed=3, score_dtype="float16", shard_mb=0.05)
    assert len(man["shards"]) > 1  # several shards were written
    streamed = load_stream_scores(tmp_path)
    mem = in_memory_saliency(config, CFG, seed=3)
    assert list(streamed) == list(mem)
    for n in mem:
        assert streamed[n].shape == mem[n].shape
        # the in-memory path batches same-shaped layers; agreement up to float16 storage
        assert torch.allclose(streamed[n], mem[n], rtol=2e-3, atol=1e-5), n


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama"])
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
def test_stream_calibrate_equals_mort(preset, sparsity, tmp_path):
    stream_saliency(hf_config(preset), CFG, tmp_path, seed=0, score_dtype="float16")
    scores = load_stream_scores(tmp_path)  # the stored (float16) scores, as float32
    ref = mort(scores, sparsity, mode="global", min_keep=1)
    cal = stream_calibrate(tmp_path, sparsity, min_keep=1, mask_out=tmp_path / "m.safetensors")
    assert cal.kept == ref.kept and cal.total == ref.total
    pooled = torch.cat([x.flatten() for x in scores.values()])
    assert (cal.loc, cal.scale) == robust_stats(pooled, "mad")  # exact on the stored scores
    masks, meta = load_mask(tmp_path / "m.safetensors")
    for n in scores:
        assert torch.equal(masks[n], ref.masks[n]), n
        assert cal.layer_kept[n] == int(ref.masks[n].sum())


def test_ties_in_stream_calibrate(tmp_path):
    # bfloat16 scores have many ties: the tie rule (lower position first) must match mort
    stream_saliency(hf_config("tiny-llama"), YopoConfig(iters=5), tmp_path, score_dtype="bfloat16")
    scores = load_stream_scores(tmp_path)
    ref = mort(scores, 0.9, mode="global")
    cal = stream_calibrate(tmp_path, 0.9, mask_out=tmp_path / "m.safetensors")
    masks, _ = load_mask(tmp_path / "m.safetensors")
    assert all(torch.equal(masks[n], ref.masks[n]) for n in scores)
    assert cal.ties_kept >= 1


def test_specs_and_init_scheme():
    config = hf_config("tiny-gpt2")
    specs = linear_specs(config)
    names = [s.name for s in specs]
    assert not any("lm_head" in n for n in names)
    assert any(s.name.endswith("attn.c_attn.weight") and s.transposed for s in specs)
    proj = next(s for s in specs if s.name.endswith("attn.c_proj.weight"))
    assert proj.std == pytest.approx(0.02 / math.sqrt(2 * config.n_layer))
    w = materialize(proj, 0)
    assert w.shape == proj.shape[::-1]  # scored as (out, in)
    assert torch.equal(w, materialize(proj, 0)) and not torch.equal(w, materialize(proj, 1))
    assert float(w.std()) == pytest.approx(proj.std, rel=0.1)
    llama = linear_specs(hf_config("tiny-llama"), include_lm_head=True)
    assert llama[-1].name == "lm_head.weight" and all(not s.transposed for s in llama)


def test_llama_7b_enumerates_on_meta():
    specs = linear_specs(hf_config("llama-7b"))
    assert len(specs) == 32 * 7
    assert sum(s.numel for s in specs) == 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)


def test_cli_hf(tmp_path, capsys):
    from yopo.cli import main
    rc = main(["hf", "--hf-config", "tiny-llama", "--out", str(tmp_path / "s"), "--iters", "5",
               "--sparsity", "0.8", "--mask-out", str(tmp_path / "m.safetensors")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "global mask: kept" in out and (tmp_path / "m.safetensors").exists()


def test_stream_resumes_after_interruption(tmp_path):
    config = hf_config("tiny-llama")
    cfg = YopoConfig(iters=10)
    full = stream_saliency(config, cfg, tmp_path / "full", shard_mb=1e-3)  # one layer per shard
    calls = []

    def crash_after_five(msg):
        calls.append(msg)
        if len(calls) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream_saliency(config, cfg, tmp_path / "cut", shard_mb=1e-3, log=crash_after_five)
    seen = []
    again = stream_saliency(config, cfg, tmp_path / "cut", shard_mb=1e-3, log=seen.append)
    assert seen[0].startswith("resuming after 4 of")  # the 5th layer was scored but not yet written
    assert len(seen) == 1 + len(full["layers"]) - 4
    assert [l["name"] for l in again["layers"]] == [l["name"] for l in full["layers"]]
    a, b = load_stream_scores(tmp_path / "full"), load_stream_scores(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other settings"):
        stream_saliency(config, YopoConfig(iters=11), tmp_path / "cut", shard_mb=1e-3)
