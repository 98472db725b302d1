"""Experiment runner: kept_scale 'layer_rms' replaced by the product-preserving balance r_i / G,
G = (prod r_i)^(1/L): each layer's kept weights move toward its init RMS relative to the others,
the net's output scale (ReLU nets are positively homogeneous up to biases) stays as the mask left it."""
import math, torch
import yopo.experiment.train.pipeline as P
from yopo.core.masks import _module_and_attr
from yopo.experiment.sweep.runners import train_runner
_orig = P.apply_masks

def balanced(model, masks, *, kept_scale="none", input_shape=None):
    if kept_scale != "layer_rms":
        return _orig(model, masks, kept_scale=kept_scale, input_shape=input_shape)
    r = {}
    with torch.no_grad():
        for n, m in masks.items():
            mod, attr = _module_and_attr(model, n)
            w = getattr(mod, attr).double()
            k = w[m.bool()]
            r[n] = float(w.pow(2).mean().sqrt() / k.pow(2).mean().sqrt()) if k.numel() and k.any() else 1.0
        g = math.exp(sum(math.log(v) for v in r.values()) / len(r))
        for n, m in masks.items():
            mod, attr = _module_and_attr(model, n)
            getattr(mod, attr).mul_(r[n] / g)
    return _orig(model, masks, kept_scale="none", input_shape=input_shape)

def train_bal(settings, masks):
    P.apply_masks = balanced
    try:
        return train_runner(settings, masks)
    finally:
        P.apply_masks = _orig
