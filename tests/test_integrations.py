"""yopo in the loops people use: torch.nn.utils.prune, the Hugging Face Trainer, Lightning (all
offline, tiny configs)."""
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import yopo
from yopo.core.calibration import n_keep
from yopo.integrations.masking import masks_from
from yopo.integrations.torch_prune import YopoPruning, yopo_importance_scores, yopo_unstructured


def prunable_params(model):
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# --- torch.nn.utils.prune ---

def test_global_unstructured_with_yopo_equals_yopo_global(tiny, one_thread):
    params = prunable_params(tiny)
    scores = yopo_importance_scores(params, model=tiny, iters=20)
    ref = yopo.calibrate(yopo.score(tiny, "yopo", iters=20), 0.9, mode="global", min_keep=0)
    prune.global_unstructured(params, pruning_method=YopoPruning, importance_scores=scores, amount=0.9)
    assert prune.is_pruned(tiny)
    names = {m: n for n, m in tiny.named_modules()}
    for m, _ in params:
        assert torch.equal(m.weight_mask.bool(), ref[f"{names[m]}.weight"])
    total = sum(m.weight.numel() for m, _ in params)
    assert sum(int(m.weight_mask.sum()) for m, _ in params) == n_keep(0.9, total)
    masks = yopo.from_torch_prune(tiny)  # into yopo masks (weight_orig folded in)
    assert all(torch.equal(masks[k], ref[k]) for k in ref)


def test_global_unstructured_without_yopo_scores_is_refused(tiny):
    with pytest.raises(ValueError, match="importance_scores=yopo_importance_scores"):
        prune.global_unstructured(prunable_params(tiny), pruning_method=YopoPruning, amount=0.5)


def test_per_layer_apply_prunes_by_the_layers_own_saliency(tiny, one_thread):
    s = yopo_importance_scores([(tiny.conv2, "weight")], iters=20, seed=3)[(tiny.conv2, "weight")]
    yopo_unstructured(tiny.conv2, "weight", 0.75, iters=20, seed=3)
    mask = tiny.conv2.weight_mask.bool()
    n = s.numel()
    assert int(mask.sum()) == n - round(0.75 * n)
    assert s[mask].min() >= s[~mask].max()
    # pruning again (iteratively) works on the remaining entries
    YopoPruning.apply(tiny.conv2, "weight", amount=10, iters=20, seed=3)
    assert int(tiny.conv2.weight_mask.sum()) == n - round(0.75 * n) - 10
    with pytest.raises(ValueError, match="cannot act"):
        YopoPruning.apply(tiny.fc1, "weight", 0.5, importance_scores=torch.ones(16, 12), iters=3)


# --- shared mask sources ---

def test_masks_from_sources(tiny, tmp_path):
    masks = yopo.calibrate(yopo.score(tiny, "magnitude"), 0.5)
    yopo.save_mask(tmp_path / "m.safetensors", masks)
    loaded = masks_from(tmp_path / "m.safetensors")
    assert all(torch.equal(loaded[k], masks[k]) for k in masks)
    fam = yopo.Family.from_scores(yopo.score(tiny, "magnitude"), yopo.prunable_layers(tiny), method="magnitude",
                                  settings={}, seed=0)
    fam.save(tmp_path / "f.safetensors")
    assert all(torch.equal(masks_from(tmp_path / "f.safetensors", sparsity=0.5)[k], masks[k]) for k in masks)
    with pytest.raises(ValueError, match="needs sparsity"):
        masks_from(fam)
    with pytest.raises(ValueError, match="cannot act on ready masks"):
        masks_from(masks, sparsity=0.5)


# --- Hugging Face Trainer ---

def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate", reason="the transformers Trainer needs accelerate")
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=2)
    torch.manual_seed(0)
    return transformers, transformers.BertForSequenceClassification(cfg)


def test_hf_trainer_callback_keeps_pruned_weights_zero(tmp_path):
    transformers, model = _tiny_bert()
    from yopo.integrations.hf_trainer import YopoMaskCallback

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cb = YopoMaskCallback.from_model(model, 0.8, iters=10)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (32, 12), generator=g)
    data = [{"input_ids": i, "attention_mask": torch.ones(12, dtype=torch.long), "labels": int(i[0] % 2)} for i in ids]
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=8,
                                          learning_rate=5e-3, weight_decay=0.1, use_cpu=True, report_to=[],
                                          save_strategy="no", logging_strategy="no", disable_tqdm=True)
    transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]).train()
    assert cb.masks and set(cb.masks) == {n for n, m in yopo.get_masks(model).items()}
    for name, m in cb.masks.items():
        w = model.get_parameter(name).detach()
        assert (w[~m] == 0).all(), name
        assert not torch.equal(w[m], before[name][m])  # the kept weights trained
    yopo.assert_pruned_zero(model)
    # the trained, masked model saves and loads as a plain model
    model.save_pretrained(tmp_path / "saved")
    plain = type(model).from_pretrained(tmp_path / "saved", local_files_only=True)
    assert all(torch.equal(plain.get_parameter(n), model.get_parameter(n)) for n in cb.masks)


# --- Lightning ---

def test_lightning_callback_keeps_pruned_weights_zero(tmp_path):
    L = pytest.importorskip("lightning", reason="lightning is an optional extra (pip install 'yopo[lightning]')")
    from yopo.integrations.lightning import YopoMaskCallback

    class Lit(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1)

    torch.manual_seed(0)
    lit = Lit()
    cb = YopoMaskCallback.from_model(lit, 0.7, iters=10)
    assert set(cb.masks) == {"net.0.weight", "net.2.weight"}
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g))
    trainer = L.Trainer(max_steps=8, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                        callbacks=[cb])
    trainer.fit(lit, torch.utils.data.DataLoader(ds, batch_size=16))
    assert trainer.global_step == 8
    for name, m in cb.masks.items():
        w = lit.get_parameter(name).detach()
        assert (w[~m] == 0).all() and (w[m] != 0).float().mean() > 0.99


# --- kept_scale in both callbacks ---

def _rms(t):
    return float(t.double().pow(2).mean().sqrt())


def test_hf_callback_rescales_the_init_once_and_not_a_resumed_checkpoint():
    transformers, model = _tiny_bert()
    from yopo.integrations.hf_trainer import YopoMaskCallback

    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    cb = YopoMaskCallback.from_model(model, 0.8, iters=10, kept_scale="layer_rms")
    cb.on_train_begin(None, transformers.TrainerState(), None, model=model)  # a fresh run: global_step 0
    for name, m in cb.masks.items():
        w = model.get_parameter(name).detach()
        assert _rms(w[m]) == pytest.approx(_rms(dense[name]), rel=1e-5), name
    # a resumed run: the Trainer has loaded the (already rescaled) checkpoint before on_train_begin
    _, resumed = _tiny_bert()
    resumed.load_state_dict(model.state_dict())
    loaded = {n: resumed.get_parameter(n).detach().clone() for n in cb.masks}
    cb.on_train_begin(None, transformers.TrainerState(global_step=3), None, model=resumed)
    assert all(torch.equal(resumed.get_parameter(n).detach(), loaded[n]) for n in cb.masks)
    with pytest.raises(ValueError, match=r"kept_scale='rms' is not allowed"):
        YopoMaskCallback(cb.masks, kept_scale="rms")


def test_lightning_callback_rescales_at_setup():
    L = pytest.importorskip("lightning", reason="lightning is an optional extra (pip install 'yopo[lightning]')")
    from yopo.integrations.lightning import YopoMaskCallback

    class Lit(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))

        def forward(self, x):
            return self.net(x)

    torch.manual_seed(0)
    lit = Lit()
    dense = {n: p.detach().clone() for n, p in lit.named_parameters()}
    cb = YopoMaskCallback.from_model(lit, 0.7, iters=10, kept_scale="auto", input_shape=(8,))
    cb.setup(None, lit, "fit")
    for name, m in cb.masks.items():  # auto: every hidden layer is normalized, so layer_rms
        assert _rms(lit.get_parameter(name).detach()[m]) == pytest.approx(_rms(dense[name]), rel=1e-5), name
