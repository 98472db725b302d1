"""Every zoo model builds and runs a forward pass (big ones: build + count only); seeded builds
are reproducible; unknown names fail with one line."""
import pytest
import torch

import yopo
from yopo.core.counting import count
from yopo.models import available_models, build, get_model

torch.set_num_threads(1)

BIG = {"wrn28_10", "wrn40_4", "wrn16_8", "resnet101", "cifar_resnet101", "resnet110", "resnet50", "cifar_resnet50"}
SMALL_INPUT = {"mlp_mnist1d": (2, 40), "conv1d_mnist1d": (2, 1, 40), "mlp_digits": (2, 1, 8, 8),
               "cnn_digits": (2, 1, 8, 8)}


@pytest.mark.parametrize("name", [n for n in available_models() if n not in BIG])
def test_forward(name):
    model = get_model(name, num_classes=7).eval()
    x = torch.randn(*SMALL_INPUT.get(name, (2, 3, 32, 32)))
    with torch.no_grad():
        assert model(x).shape == (2, 7)
    assert yopo.prunable_layers(model)


@pytest.mark.parametrize("name,params", [("wrn28_10", 36_479_194), ("resnet101", 42_520_650),
                                         ("cifar_resnet101", 42_512_970), ("resnet50", 23_528_522)])
def test_big_models_build(name, params):
    assert sum(p.numel() for p in get_model(name, num_classes=10).parameters()) == params


def test_known_sizes():
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(get_model("resnet20")) == 272_474  # CIFAR ResNet-20 with 1x1 projection shortcuts
    assert n(get_model("cifar_resnet18")) == 11_173_962
    assert isinstance(get_model("cifar_resnet18").maxpool, torch.nn.Identity)
    assert get_model("cifar_resnet18").conv1.stride == (1, 1)
    assert get_model("resnet18").conv1.kernel_size == (7, 7)
    assert get_model("resnet20", width=8).conv1.out_channels == 8


def test_torchvision_names_and_fallback():
    assert type(get_model("tv:mobilenet_v2", 10)).__name__ == "MobileNetV2"
    assert type(get_model("squeezenet1_0", 10)).__name__ == "SqueezeNet"  # fallback lookup
    m = get_model("tv:resnet18", 5, in_channels=1).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 1, 64, 64)).shape == (1, 5)
    with pytest.raises(ValueError, match="not a torchvision classification model"):
        get_model("tv:nonet")


def test_timm_optional():
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="timm, which is not installed"):
            get_model("timm:resnet18")
    else:
        assert get_model("timm:resnet18", 10) is not None


def test_unknown_model_one_line():
    with pytest.raises(ValueError, match="model='nonet' is not allowed") as e:
        get_model("nonet")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("init", ["default", "kaiming_normal", "xavier_normal", "normal"])
def test_seeded_init_reproducible(init):
    a, b = build("resnet20", 10, init=init, seed=3), build("resnet20", 10, init=init, seed=3)
    c = build("resnet20", 10, init=init, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.weight"], sc["conv1.weight"])
    if init == "normal":
        assert abs(float(sa["layer1.0.conv1.weight"].std()) - 0.01) < 0.002
    if init == "kaiming_normal":
        w = sa["layer3.0.conv2.weight"]
        assert abs(float(w.std()) - (2 / (64 * 9)) ** 0.5) < 0.005
    with pytest.raises(ValueError, match="init='bad'"):
        build("resnet20", init="bad")


def test_counting_dense_and_masked():
    model = build("resnet20", 10, seed=0)
    dense = count(model, (3, 32, 32))
    assert dense.flops_kept == dense.flops and dense.params_kept == dense.params
    conv1 = dense.layers[0]
    assert conv1.flops == 2 * 16 * 3 * 9 * 32 * 32  # 2 FLOPs per multiply-add
    yopo.apply_masks(model, yopo.calibrate(yopo.score(model, "magnitude"), 0.9, mode="local"))
    c = count(model, (3, 32, 32))
    assert abs(c.sparsity - 0.9) < 1e-3
    for l in c.layers:
        assert l.flops_kept == pytest.approx(l.flops * l.params_kept / l.params)
    pruned = sum(l.params - l.params_kept for l in c.layers)
    assert c.params_kept == c.params - pruned
    assert c.flops_kept < 0.2 * c.flops


def test_imagenet_resolution_names_the_models_built_for_224():
    # yopo prune uses it for the natural input shape: at 32 x 32 an ImageNet ResNet's last stages
    # are 1 x 1 and the outer taps of every 3x3 kernel would count as stranded
    from yopo.models import imagenet_resolution

    assert all(imagenet_resolution(n) for n in ("resnet18", "resnet101", "tv:mobilenet_v2", "mobilenet_v2"))
    assert not any(imagenet_resolution(n) for n in ("resnet20", "cifar_resnet18", "vgg11", "cnn_digits", "nonsense"))
