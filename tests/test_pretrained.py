"""Models from local checkpoints (no download): state-dict files for named architectures, Hugging
Face folders; `yopo prune --checkpoint` scores the loaded weights."""
import pytest
import torch
from safetensors.torch import save_file

import yopo
from yopo.cli import main
from yopo.models import build
from yopo.models.pretrained import from_hf_folder, load_pretrained


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_state_dict_file_round_trip_and_num_classes_inferred(tmp_path, suffix):
    model = build("resnet20", 7, init="kaiming_normal", seed=3)
    path = tmp_path / f"r20{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)  # DDP-style
    else:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded, masks = load_pretrained("resnet20", path)
    assert masks == {} and loaded.fc.out_features == 7 and same_weights(loaded, model)


def test_torchvision_checkpoint(tmp_path):
    torch.manual_seed(0)
    import torchvision
    model = torchvision.models.mobilenet_v3_small(weights=None)  # 1000 classes, as a downloaded .pth
    torch.save(model.state_dict(), tmp_path / "mnv3.pth")
    loaded, _ = load_pretrained("tv:mobilenet_v3_small", tmp_path / "mnv3.pth")
    assert same_weights(loaded, model)
    scores = yopo.score(loaded, "magnitude")
    assert torch.equal(scores["features.0.0.weight"], model.features[0][0].weight.detach().abs())


def test_legacy_yopo_state_dict_returns_its_masks(tmp_path):
    model = build("mlp_digits", 10, input_size=64, seed=0)
    masks = yopo.calibrate(yopo.score(model, "magnitude"), 0.5)
    yopo.apply_masks(model, masks)
    state = dict(model.state_dict())
    state.update({n[: -len("weight")] + "weight_mask": m for n, m in masks.items()})
    torch.save(state, tmp_path / "old.pt")
    loaded, found = load_pretrained("mlp_digits", tmp_path / "old.pt", input_size=64)
    assert all(torch.equal(found[k], masks[k]) for k in masks) and same_weights(loaded, model)


def test_checkpoint_errors_are_one_line(tmp_path):
    torch.save(build("resnet20", 10).state_dict(), tmp_path / "r20.pth")
    with pytest.raises(ValueError, match="does not fit model 'vgg11'") as e:
        load_pretrained("vgg11", tmp_path / "r20.pth")
    assert "\n" not in str(e.value)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a weights-only state dict"):
        load_pretrained("resnet20", tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="has suffix '.txt'"):
        (tmp_path / "a.txt").write_text("x")
        load_pretrained("resnet20", tmp_path / "a.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained("resnet20", tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        from_hf_folder(tmp_path)


def _tiny_bert_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    model.save_pretrained(tmp_path / "bert")
    return model, tmp_path / "bert"


def test_hf_folder_loads_offline_and_scores(tmp_path):
    model, folder = _tiny_bert_folder(tmp_path)
    assert (folder / "model.safetensors").is_file()
    loaded = from_hf_folder(folder)
    assert type(loaded).__name__ == "BertForSequenceClassification"
    assert all(torch.equal(loaded.get_parameter(n), p) for n, p in model.named_parameters())
    scores = yopo.score(loaded, "yopo", iters=5)
    assert "bert.encoder.layer.0.attention.self.query.weight" in scores and "classifier.weight" in scores


def test_cli_prune_checkpoint(tmp_path, capsys):
    model = build("cnn_digits", 10, init="kaiming_normal", seed=5)
    torch.save(model.state_dict(), tmp_path / "cnn.pth")
    out = tmp_path / "fam.safetensors"
    assert main(["prune", "--model", "cnn_digits", "--checkpoint", str(tmp_path / "cnn.pth"), "--method",
                 "magnitude", "--sparsity", "0.5", "--out", str(out)]) == 0
    fam = yopo.Family.load(out)
    assert torch.equal(fam.scores["features.0.weight"], model.features[0].weight.detach().abs())
    assert fam.meta["checkpoint"] == str(tmp_path / "cnn.pth")
    _, folder = _tiny_bert_folder(tmp_path)
    assert main(["prune", "--checkpoint", str(folder), "--iters", "3", "--sparsity", "0.7",
                 "--out", str(tmp_path / "bert_fam.safetensors")]) == 0
    assert "classifier.weight" in capsys.readouterr().out
    assert yopo.Family.load(tmp_path / "bert_fam.safetensors").meta["model"] == "hf:BertForSequenceClassification"
    assert main(["prune", "--model", "resnet20", "--checkpoint", str(tmp_path / "cnn.pth"),
                 "--out", str(out)]) == 2
    assert "does not fit model 'resnet20'" in capsys.readouterr().err
