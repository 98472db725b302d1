"""Correctness at the edges (issue 11, items 2, 3, 4, 6, 7): one prunable-layer rule (HF Conv1D,
MultiheadAttention, embedding ties), `yopo hf` on any transformers config, verified artifacts and
exact fingerprints, one-line CLI errors (with a hypothesis fuzz), and writes a SIGKILL cannot
leave half-done. Tiny models only: every test takes seconds."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import yopo
from yopo.cli import main
from yopo.core.calibration import mort, n_keep
from yopo.core.family import Family, load_mask, save_mask
from yopo.core.io import atomic_path, remove_stale_temps
from yopo.core.layers import prunable_report
from yopo.core.masks import get_masks
from yopo.models import build

try:  # the HF tests need the `hf` extra; the rest of this file does not
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model
    from transformers.pytorch_utils import Conv1D
except ImportError:
    transformers = None
needs_hf = pytest.mark.skipif(transformers is None, reason="transformers is not installed (extra 'hf')")

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


def run_cli(argv) -> tuple[int, str, str]:
    """``yopo.cli.main(argv)`` in-process: (exit code, stdout, stderr); argparse exits are caught."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def assert_one_line_error(rc, err, *needles):
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and "error:" in lines[0], err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ----------------------------------------------------------------------------- tiny models

class TinyGPT(nn.Module):
    """GPT-2 blocks (HF Conv1D) on float inputs (B, T, 16) -> 10 class logits."""

    def __init__(self):
        super().__init__()
        self.gpt = GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=8,
                                        bos_token_id=0, eos_token_id=0))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.gpt(inputs_embeds=x).last_hidden_state[:, -1])


class TinyMHA(nn.Module):
    """A Linear embedding, one nn.TransformerEncoderLayer (MultiheadAttention) and a head."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.enc = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.enc(self.inp(x)).mean(1))


class ConvOneD(nn.Module):
    """An MLP whose hidden layers are HF Conv1D (weights stored (in, out))."""

    def __init__(self):
        super().__init__()
        self.a = Conv1D(12, 10)  # nf=out, nx=in: weight (10, 12)
        self.b = Conv1D(7, 12)
        self.head = nn.Linear(7, 5)

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


class LinearTwin(nn.Module):
    """The same function as :class:`ConvOneD` with nn.Linear layers (weights (out, in))."""

    def __init__(self, src: ConvOneD):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(10, 12), nn.Linear(12, 7), nn.Linear(7, 5)
        with torch.no_grad():
            for mine, theirs in ((self.a, src.a), (self.b, src.b)):
                mine.weight.copy_(theirs.weight.t())
                mine.bias.copy_(theirs.bias)
            self.head.load_state_dict(src.head.state_dict())

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


def _opts(method, shape):
    if method in ("snip", "grasp", "prospr", "iter_snip"):
        return {"batch_size": 8}
    if method == "synflow":
        return {"iters": 5, "input_shape": shape}
    if method == "yopo":
        return {"iters": 20}
    return {}


def _data(shape, n=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 5, (n,), generator=g)


# ----------------------------------------------------------------------------- item 2: prunable layers

@needs_hf
def test_gpt2_prunes_conv1d_never_the_tied_embedding():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16,
                                       bos_token_id=0, eos_token_id=0))
    rep = prunable_report(model)
    names = [l.name for l in rep.layers]
    assert len(names) == 8 and all(l.transposed for l in rep.layers)  # c_attn, c_proj, c_fc, c_proj per block
    assert "lm_head.weight" not in names
    why = {s.name: s.reason for s in rep.skipped}
    assert "transformer.wte.weight" in why["lm_head.weight"]
    with pytest.warns(UserWarning, match="lm_head.weight .*tied to an embedding"):
        scores = yopo.score(model, "yopo", iters=10)
    assert set(scores) == set(names)
    cal = mort(scores, 0.99, mode="global", min_keep=1)
    for l in rep.layers:
        m = cal.masks[l.name]
        assert m.shape == l.shape  # the parameter's own (in, out) shape
        assert bool((m.sum(0) >= 1).all())  # min_keep per OUTPUT feature (dim 1 of a Conv1D)
    yopo.apply_masks(model, cal.masks)
    total = sum(l.numel for l in rep.layers)
    assert yopo.sparsity(model) == 1 - cal.kept / total
    assert float((model.transformer.wte.weight == 0).float().mean()) == 0.0  # the embedding is untouched


@needs_hf
@pytest.mark.parametrize("method", yopo.available_methods())
def test_conv1d_scores_equal_the_transposed_linear_twin(method):
    """One rule: a Conv1D layer gets exactly the scores and masks of the nn.Linear computing the
    same function (transposed), for every scoring method."""
    torch.manual_seed(0)
    conv = ConvOneD()
    lin = LinearTwin(conv)
    data = None if yopo.get_method(method).data_free else _data((10,))
    sc = yopo.score(conv, method, data=data, **_opts(method, (10,)))
    sl = yopo.score(lin, method, data=data, **_opts(method, (10,)))
    assert sc.transposed == {"a.weight", "b.weight"}
    for n in ("a.weight", "b.weight"):
        assert sc[n].shape == conv.get_parameter(n).shape
        torch.testing.assert_close(sc[n].t(), sl[n], rtol=1e-4, atol=1e-6)
    mc, ml = yopo.calibrate(sc, 0.7), yopo.calibrate(sl, 0.7)
    if method in ("yopo", "magnitude", "random", "xnet", "rreg", "phew", "npb"):  # exact, no float noise
        assert all(torch.equal(mc[n].t() if n in sc.transposed else mc[n], ml[n]) for n in ml)


def test_multihead_attention_in_proj_is_prunable_masked_and_counted():
    torch.manual_seed(0)
    model = TinyMHA()
    names = [l.name for l in prunable_report(model).layers]
    assert names == ["inp.weight", "enc.self_attn.in_proj_weight", "enc.self_attn.out_proj.weight",
                     "enc.linear1.weight", "enc.linear2.weight", "head.weight"]
    masks = yopo.calibrate(yopo.score(model, "magnitude"), 0.8)
    yopo.apply_masks(model, masks)
    assert set(get_masks(model)) == set(names)
    attn = model.enc.self_attn
    model(torch.randn(4, 6, 8)).sum().backward()
    assert bool((attn.in_proj_weight.grad[~masks["enc.self_attn.in_proj_weight"]] == 0).all())
    yopo.assert_pruned_zero(model)
    assert yopo.sparsity(model) == pytest.approx(0.8, abs=1e-3)
    from yopo.core.counting import count
    c = {l.name: l for l in count(model, (6, 8)).layers}
    # per sample: 6 tokens x (3*16 x 16) and 6 x (16 x 16) multiply-adds
    assert c["enc.self_attn.in_proj_weight"].flops == 2 * 6 * 48 * 16
    assert c["enc.self_attn.out_proj.weight"].flops == 2 * 6 * 16 * 16
    yopo.to_torch_prune(model)  # torch.nn.utils.prune reparametrization of in_proj_weight, and back
    assert hasattr(attn, "in_proj_weight_orig")
    assert set(yopo.from_torch_prune(model)) == set(names)


def test_vit_b16_attention_projections_are_counted():
    import torchvision
    with torch.device("meta"):
        vit = torchvision.models.vit_b_16()
    rep = prunable_report(vit)
    expected = sum(p.numel() for n, p in vit.named_parameters() if n.endswith("weight") and p.dim() >= 2)
    assert sum(l.numel for l in rep.layers) == expected  # in_proj_weight included (21M of 86M)
    assert sum(l.name.endswith("in_proj_weight") for l in rep.layers) == 12
    assert {s.name for s in rep.skipped} == {"class_token", "encoder.pos_embedding"}


@needs_hf
def test_bert_tied_decoder_is_skipped_and_said():
    with torch.device("meta"):
        model = transformers.BertForMaskedLM(transformers.BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=50))
    rep = prunable_report(model)
    skipped = {s.name: s.reason for s in rep.skipped}
    assert "word_embeddings" in skipped["cls.predictions.decoder.weight"]
    assert all("embeddings" not in l.name for l in rep.layers)


@needs_hf
@pytest.mark.parametrize("kind", ["gpt", "mha"])
@pytest.mark.parametrize("method", yopo.available_methods())
def test_every_method_scores_conv1d_and_attention_models(kind, method):
    torch.manual_seed(0)
    model, shape = (TinyGPT(), (6, 16)) if kind == "gpt" else (TinyMHA(), (6, 8))
    layers = prunable_report(model).layers
    x, y = _data(shape)
    data = None if yopo.get_method(method).data_free else (x, y % 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank clipping on the tiny head
        scores = yopo.score(model, method, data=data, **_opts(method, shape))
    assert list(scores) == [l.name for l in layers]
    total = sum(l.numel for l in layers)
    cal = mort(scores, 0.9, mode="global", min_keep=1)
    assert cal.kept == n_keep(0.9, total)
    for l in layers:
        assert bool(torch.isfinite(scores[l.name]).all())
        assert bool((l.to_rows(cal.masks[l.name]).sum(1) >= 1).all())  # one weight per output row


# ----------------------------------------------------------------------------- item 3: yopo hf

TINY = {
    "bert": ["hidden_size=32", "num_hidden_layers=1", "num_attention_heads=2", "intermediate_size=64",
             "vocab_size=64"],
    "t5": ["d_model=32", "d_ff=64", "num_layers=1", "num_decoder_layers=1", "num_heads=2", "d_kv=16",
           "vocab_size=64"],
    "mistral": ["hidden_size=32", "intermediate_size=64", "num_hidden_layers=1", "num_attention_heads=2",
                "num_key_value_heads=1", "vocab_size=64"],
}


@needs_hf
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_hf_any_model_type_with_overrides(model_type, tmp_path):
    from yopo.integrations.hf_stream import enumerate_layers, hf_config, load_stream_scores, parse_overrides

    rc, out, err = run_cli(["hf", "--hf-config", model_type, *sum((["--set", s] for s in TINY[model_type]), []),
                            "--out", tmp_path / "s", "--iters", "3", "--sparsity", "0.8",
                            "--mask-out", tmp_path / "m.safetensors"])
    assert rc == 0, err
    assert "global mask: kept" in out and "not pruned:" in out  # embeddings are reported
    specs, _ = enumerate_layers(hf_config(model_type, parse_overrides(TINY[model_type])))
    scores = load_stream_scores(tmp_path / "s")
    assert list(scores) == [s.name for s in specs]
    masks, _ = load_mask(tmp_path / "m.safetensors")
    assert set(masks) == set(scores)
    assert not any("embed" in n or "shared" in n for n in scores)


@needs_hf
def test_hf_local_config_json(tmp_path):
    GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16).to_json_file(tmp_path / "config.json")
    rc, out, err = run_cli(["hf", "--hf-config", tmp_path / "config.json", "--out", tmp_path / "s", "--iters", "3",
                            "--sparsity", "none"])
    assert rc == 0, err
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert [l["name"] for l in man["layers"]] == [f"transformer.h.0.{m}.weight" for m in
                                                  ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    assert all(l["transposed"] for l in man["layers"])
    rc, _, err = run_cli(["hf", "--hf-config", tmp_path, "--out", tmp_path / "s2", "--iters", "3",
                          "--sparsity", "none"])  # a folder holding config.json
    assert rc == 0, err


@needs_hf
def test_hf_stream_calibrates_conv1d_by_output_rows(tmp_path):
    from yopo.integrations.hf_stream import hf_config, load_stream_scores, stream_calibrate, stream_saliency
    stream_saliency(hf_config("tiny-gpt2"), yopo.YopoConfig(iters=5), tmp_path, shard_mb=0.05)
    scores = load_stream_scores(tmp_path)
    assert scores.transposed == set(scores)
    cal = stream_calibrate(tmp_path, 0.999, mask_out=tmp_path / "m.safetensors")
    masks, _ = load_mask(tmp_path / "m.safetensors")
    ref = mort(scores, 0.999, mode="global")
    for n, m in masks.items():
        assert torch.equal(m, ref.masks[n])
        assert bool((m.sum(0) >= 1).all())  # every output feature keeps a weight
    assert cal.kept == ref.kept


@needs_hf
@pytest.mark.parametrize("argv, needle", [
    (["--max-layers", "-1"], "--max-layers=-1"),
    (["--max-layers", "0"], "--max-layers=0"),
    (["--shard-mb", "0"], "--shard-mb=0.0"),
    (["--shard-mb", "-1"], "--shard-mb=-1.0"),
    (["--shard-mb", "nan"], "--shard-mb=nan"),
    (["--set", "no_such_setting=1"], "no_such_setting"),
    (["--set", "n_layer"], "KEY=VALUE"),
    (["--hf-config", "no-such-model-type"], "no-such-model-type"),
    (["--hf-config", "missing/config.json"], "no such file"),
])
def test_hf_bad_settings_fail_before_writing(argv, needle, tmp_path):
    out = tmp_path / "s"
    rc, _, err = run_cli(["hf", "--hf-config", "tiny-gpt2", "--out", out, *argv])
    assert_one_line_error(rc, err, needle)
    assert not out.exists()


# ----------------------------------------------------------------------------- item 4: verified artifacts

def _family(model, name="tiny"):
    scores = yopo.score(model, "yopo", iters=10)
    return Family.from_scores(scores, yopo.prunable_layers(model), method="yopo", settings={}, seed=0,
                              model_name=name)


def _metadata(path):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_family_content_hash_detects_flipped_bytes(tiny, tmp_path):
    path = tmp_path / "f.safetensors"
    _family(tiny).save(path)
    assert len(_metadata(path)["sha256"]) == 64
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 500, len(data)):  # 500 bytes of scores
        data[i] ^= 0x5A
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="content hash mismatch"):
        Family.load(tmp_path / "bad.safetensors")


def test_old_family_without_hash_loads_with_a_warning(tiny, tmp_path):
    from safetensors.torch import load_file, save_file
    path = tmp_path / "f.safetensors"
    fam = _family(tiny)
    fam.save(path)
    md = _metadata(path)
    del md["sha256"]
    save_file(load_file(str(path)), str(tmp_path / "old.safetensors"), metadata=md)
    with pytest.warns(UserWarning, match=r"no content hash \(written by an older yopo\)"):
        back = Family.load(tmp_path / "old.safetensors")
    assert all(torch.equal(back.scores[k], fam.scores[k]) for k in fam.scores)


def test_stored_shapes_are_checked_against_the_fingerprint(tiny, tmp_path):
    from safetensors.torch import load_file, save_file
    path = tmp_path / "f.safetensors"
    _family(tiny).save(path)
    t = load_file(str(path))
    t["fc1.weight"] = t["fc1.weight"][:3].clone()
    save_file(t, str(tmp_path / "b.safetensors"), metadata=_metadata(path))
    with pytest.raises(ValueError, match=r"'fc1.weight' are torch.float32 \(3, 12\) but the fingerprint says"):
        Family.load(tmp_path / "b.safetensors")
    del t["fc1.weight"]
    save_file(t, str(tmp_path / "c.safetensors"), metadata=_metadata(path))
    with pytest.raises(ValueError, match="no stored tensor for layer 'fc1.weight'"):
        Family.load(tmp_path / "c.safetensors")


def test_load_mask_checks_the_packed_length(tiny, tmp_path):
    from safetensors.torch import load_file, save_file
    path = tmp_path / "m.safetensors"
    save_mask(path, _family(tiny).masks(0.9))
    t = load_file(str(path))
    t["conv2.weight"] = t["conv2.weight"][:-1].clone()
    save_file(t, str(tmp_path / "short.safetensors"), metadata=_metadata(path))
    with pytest.raises(ValueError, match=r"layer 'conv2.weight' of shape \(12, 8, 3, 3\) needs 108 packed bytes; "
                                         r"the file holds 107"):
        load_mask(tmp_path / "short.safetensors")


def test_fingerprint_must_match_both_ways():
    r20, r32 = build("resnet20", 10, seed=0), build("resnet32", 10, seed=0)
    fam = _family(r20, "resnet20")
    with pytest.raises(ValueError, match=r"covers 22 of the model's 34 prunable layers; 12 layers \(193,536 weights\)"):
        fam.check(r32)
    fam.check(r32, allow_dense=["layer*.3.*", "layer*.4.*"])  # named: allowed
    with pytest.raises(ValueError, match="prunes layer 'fc.weight', which the pattern 'fc' asks to leave dense"):
        fam.check(r20, allow_dense=["fc"])
    fam.meta["exclude"] = ["fc"]  # a family made without fc: fc stays dense by its own record
    fam.scores.pop("fc.weight")
    fam.meta["fingerprint"]["layers"] = fam.meta["fingerprint"]["layers"][:-1]
    fam.check(r20)


def test_train_mask_needs_an_exact_match(tmp_path):
    from yopo.experiment.train.pipeline import resolve_masks
    r20, r32 = build("resnet20", 10, seed=0), build("resnet32", 10, seed=0)
    path = tmp_path / "r20.safetensors"
    _family(r20, "resnet20").save(path)
    with pytest.raises(ValueError, match="made for model 'resnet20' and does not fit resnet32: .*covers 22"):
        resolve_masks(str(path), r32, sparsity=0.9, model_name="resnet32")
    masks, _, _ = resolve_masks(str(path), r32, sparsity=0.9, allow_dense=["layer*.3.*", "layer*.4.*"])
    yopo.apply_masks(r32, masks)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == n_keep(0.9, sum(m.numel() for m in masks.values()))
    partial = {k: v for k, v in masks.items() if k != "fc.weight"}
    with pytest.raises(ValueError, match="would stay dense: fc.weight"):
        resolve_masks(partial, r20, sparsity=0.9)


# ----------------------------------------------------------------------------- item 6: no tracebacks

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = build("mlp_digits", 10, seed=0)
    fam = _family(model, "mlp_digits")
    fam.meta["num_classes"] = 10
    fam.save(d / "fam.safetensors")
    save_mask(d / "mask.safetensors", fam.masks(0.9), {"model": "mlp_digits"})
    (d / "a_file").write_text("x")
    (d / "a_dir").mkdir()
    return d


def test_cli_bad_paths_devices_and_classes(files, tmp_path):
    base = ["prune", "--model", "mlp_digits", "--iters", "2"]
    cases = [
        (base + ["--num-classes", "0", "--out", tmp_path / "x"], "--num-classes=0"),
        (base + ["--device", "cuda:7", "--out", tmp_path / "x"], "cuda:7"),
        (base + ["--device", "warp9", "--out", tmp_path / "x"], "warp9"),
        (base + ["--out", files / "a_dir"], "is a folder"),
        (base + ["--out", files / "a_file" / "x.safetensors"], "is a file, not a folder"),
        (base + ["--out", tmp_path / "x", "--mask-out", files / "a_dir"], "--mask-out"),
        (["train", "--out", files / "a_file", "--epochs", "1"], "is a file, not a folder"),
        (["train", "--out", files / "a_file" / "run", "--epochs", "1"], "is a file, not a folder"),
        (["train", "--device", "cuda:7", "--epochs", "1"], "cuda:7"),
        (["train", "--num-classes", "0", "--epochs", "1"], "--num-classes=0"),
        (["train", "--mask", files / "nope.safetensors"], "nope.safetensors"),
        (["hf", "--hf-config", "tiny-gpt2", "--out", files / "a_file"], "is a file, not a folder"),
        (["hf", "--hf-config", "tiny-gpt2", "--out", files / "a_file" / "s"], "is a file, not a folder"),
        (["inspect", files / "a_dir"], "a_dir"),
        (["prune", "--no-such-flag"], "unrecognized arguments"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ]
    for argv, needle in cases:
        rc, _, err = run_cli(argv)
        assert_one_line_error(rc, err, needle)
    assert sorted(os.listdir(tmp_path)) == []  # nothing written by any of them


def test_cli_train_with_a_crafted_short_mask_file(files, tmp_path):
    data = (files / "mask.safetensors").read_bytes()
    (tmp_path / "short.safetensors").write_bytes(data[: len(data) // 2])
    rc, _, err = run_cli(["train", "--model", "mlp_digits", "--mask", tmp_path / "short.safetensors",
                          "--epochs", "1", "--no-progress", "--out", tmp_path / "run"])
    assert_one_line_error(rc, err, "short.safetensors")
    from safetensors.torch import load_file, save_file
    t = load_file(str(files / "mask.safetensors"))
    k = sorted(t)[0]
    t[k] = t[k][:2].clone()
    save_file(t, str(tmp_path / "crafted.safetensors"), metadata=_metadata(files / "mask.safetensors"))
    rc, _, err = run_cli(["train", "--model", "mlp_digits", "--mask", tmp_path / "crafted.safetensors",
                          "--epochs", "1", "--no-progress"])
    assert_one_line_error(rc, err, "packed bytes")


BAD_VALUES = {
    "--sparsity": ["1", "-0.1", "nan", "inf", "1e400", "x", ""],
    "--num-classes": ["0", "-3", "x", "1.5"],
    "--mode": ["GLOBAL", "", "nope"],
    "--robust": ["median"],
    "--min-keep": ["-1", "x"],
    "--col-keep": ["-2"],
    "--seed": ["-1", "x"],
    "--rank": ["0", "-2", "x"],
    "--iters": ["-1", "x"],
    "--method": ["nope", ""],
    "--device": ["cuda:7", "gpu", "cuda:-1", ":", "cpu:x"],
    "--weight-init": ["he"],
    "--method-opt": ["a=1"],
}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(flag=st.sampled_from(sorted(BAD_VALUES)), data=st.data())
def test_fuzz_prune_flags_give_one_line(flag, data, files):
    value = data.draw(st.sampled_from(BAD_VALUES[flag]))
    out = files / "fuzz" / "never.safetensors"
    rc, _, err = run_cli(["prune", "--model", "mlp_digits", "--iters", "2", flag, value, "--out", out])
    assert_one_line_error(rc, err)
    assert not out.exists()


def _mutations(draw, raw: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "random", "append"]))
    if kind == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "flip":
        data = bytearray(raw)
        for i in draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8, unique=True)):
            data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind == "random":
        return draw(st.binary(max_size=256))
    return raw + draw(st.binary(min_size=1, max_size=16))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_artifact_bytes_give_one_line(data, files):
    """Any damage to a family or mask file is an error of one line, never a traceback, never a
    silent load (the content hash covers scores and metadata; appended bytes break safetensors)."""
    which = data.draw(st.sampled_from(["fam", "mask"]))
    raw = (files / f"{which}.safetensors").read_bytes()
    bad = _mutations(data.draw, raw)
    path = files / f"fuzz_{which}.safetensors"
    path.write_bytes(bad)
    if which == "fam":
        rc, _, err = run_cli(["inspect", path, "--sparsity", "0.9"])
    else:
        from yopo.experiment.train.pipeline import resolve_masks
        err = ""
        try:
            resolve_masks(str(path), build("mlp_digits", 10, seed=0), sparsity=0.9)
            rc = 0
        except (ValueError, FileNotFoundError) as e:
            rc, err = 2, f"error: {e}"
    assert bad != raw and rc == 2
    assert_one_line_error(rc, err)


# ----------------------------------------------------------------------------- item 7: interrupted writes

CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    import yopo.core.io as io_
    real = os.fsync
    def slow_fsync(fd):  # called once the temporary holds the whole file, before the rename
        print("writing", flush=True)
        time.sleep(60)
        real(fd)
    io_.os.fsync = slow_fsync
    from yopo.cli import main
    main(["prune", "--model", "mlp_digits", "--iters", "2", "--out", {out!r}])
""")


def test_sigkill_during_prune_out_leaves_only_our_temp_and_the_next_write_removes_it(tmp_path):
    out = tmp_path / "fam.safetensors"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(repo=str(REPO), out=str(out))], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in child.stdout:  # wait until the write is under way
            if line.startswith("writing"):
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    left = os.listdir(tmp_path)
    assert not out.exists()
    assert len(left) == 1 and left[0].startswith(f".fam.safetensors.{child.pid}.") and left[0].endswith(".tmp")
    assert os.path.getsize(tmp_path / left[0]) > 0  # safetensors' own ".tmpXXXX" is never used
    rc, _, err = run_cli(["prune", "--model", "mlp_digits", "--iters", "2", "--out", out])
    assert rc == 0, err
    assert os.listdir(tmp_path) == ["fam.safetensors"]  # the stale temporary is gone
    Family.load(out)


def test_stale_temp_rules(tmp_path):
    target = tmp_path / "a.bin"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".a.bin.{dead.pid}.abc123.tmp"  # writer gone
    live = tmp_path / f".a.bin.{os.getppid()}.def456.tmp"  # a live writer (our parent)
    reused = tmp_path / f".a.bin.{os.getpid()}.ghi789.tmp"  # pid alive but started after the write
    other = tmp_path / f".a.bin.1.{dead.pid}.jkl000.tmp"  # a temporary of the target "a.bin.1"
    for f in (stale, live, reused, other):
        f.write_bytes(b"x")
    os.utime(reused, (0, 0))
    removed = remove_stale_temps(target)
    assert set(removed) == {stale, reused}
    assert live.exists() and other.exists()
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        assert tmp.name.startswith(f".a.bin.{os.getpid()}.")
        f.write(b"data")
    assert target.read_bytes() == b"data"
    assert sorted(os.listdir(tmp_path)) == sorted([target.name, live.name, other.name])


def test_failed_write_removes_its_temp(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert os.listdir(tmp_path) == []
