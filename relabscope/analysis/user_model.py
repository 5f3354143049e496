"""A model relabscope did not build, made ready for Grad-CAM.

A run logged by the Lightning or Hugging Face callback, or by a hand-written loop, has no
relabscope checkpoint: the user names the model (a module or a factory that builds one),
optionally a state-dict file to load into it, and the layer to explain. A module is
explained as a copy: Grad-CAM puts it in evaluation mode, turns in-place ReLUs off, freezes
its parameters and moves it to the explaining device, none of which may reach a model the
user goes on training. TorchScript files
are refused with the reason: scripted modules take no forward hooks, and Grad-CAM needs
one on the explained layer to read its activations and gradients.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Union

import torch
from torch import nn

from relabscope.errors import RelabscopeError
from relabscope.models.pretrained import read_weights_file

#: a module, or a factory called with no argument that returns one
ModelArg = Union[nn.Module, Callable[[], nn.Module]]
#: float images (B x 3 x S x S, 0..255) -> the model's input
Transform = Callable[[torch.Tensor], torch.Tensor]
#: the side length a model of your own sees when neither the call nor the run says one
USER_IMAGE_SIZE = 224


class LogitsOf(nn.Module):
    """``model`` with the logits as its only output (captum attributes one tensor): the
    output itself, the first item of a tuple or list, or ``.logits`` (Hugging Face)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(images)).float()


def logits_of(output: Any) -> torch.Tensor:
    """The logits in what a model returned; a one-line error when there are none."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    raise RelabscopeError(f"the model returned {type(output).__name__}: expected logits, a tuple starting with "
                          "them, or an object with .logits")


def load_user_model(model: ModelArg, weights: str | Path | None, layer: str | None) -> tuple[nn.Module, nn.Module]:
    """(images -> logits module, the layer to explain), made ready by :func:`ready_for_gradcam`.

    Raises:
        RelabscopeError: not a module, a TorchScript module, a weights file that does not
            load, or a layer name the model lacks.
    """
    module = _build(model)
    if weights is not None:
        load_weights(module, Path(weights))
    if not layer:
        raise RelabscopeError("layer: name the layer Grad-CAM explains (e.g. 'backbone.layer4'); "
                              f"the model's last modules: {', '.join(_last_names(module))}")
    try:
        target = module.get_submodule(layer)
    except AttributeError:
        raise RelabscopeError(f"layer {layer!r}: the model has no such module "
                              f"(its last modules: {', '.join(_last_names(module))})") from None
    return LogitsOf(ready_for_gradcam(module)), target


def ready_for_gradcam(module: nn.Module) -> nn.Module:
    """``module`` in evaluation mode with in-place ReLUs off (an in-place activation
    overwrites the tensor a hook kept, which breaks the backward pass captum runs through
    it) and parameters frozen (attributions then leave no ``.grad`` behind: captum asks
    autograd for the layer's gradients only)."""
    module.eval()
    for sub in module.modules():
        if isinstance(sub, nn.ReLU):
            sub.inplace = False
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def stored_normalization(config: dict[str, Any]) -> Transform | None:
    """The input normalisation a run's config records (``RunCapture(normalize=(mean,
    std))``: 0..1 units, as torchvision's ``Normalize``) as a transform of float images
    0..255; None when it records none."""
    spec = config.get("normalize")
    if not spec:
        return None
    mean = torch.tensor(spec["mean"], dtype=torch.float32).view(1, -1, 1, 1) * 255
    std = torch.tensor(spec["std"], dtype=torch.float32).view(1, -1, 1, 1) * 255

    def transform(pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - mean.to(pixels.device)) / std.to(pixels.device)

    return transform


def load_weights(module: nn.Module, path: Path) -> None:
    """Load a state-dict file strictly (a Lightning checkpoint's ``state_dict`` too)."""
    state = read_weights_file(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise RelabscopeError(f"{path}: not a state dict")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise RelabscopeError(f"{path}: does not fit the model ({' '.join(first[1:2]).strip() or first[0]})") from None


def _build(model: ModelArg) -> nn.Module:
    if isinstance(model, torch.jit.ScriptModule):
        raise RelabscopeError("a TorchScript model takes no forward hooks, which Grad-CAM needs on the explained "
                              "layer: pass the model's class or a function that builds it, and its weights file")
    if isinstance(model, (str, Path)):
        raise RelabscopeError(f"{model}: pass the model (a module or a function that builds one) and this file "
                              "as weights=; a TorchScript file cannot be explained (its modules take no hooks)")
    if isinstance(model, nn.Module):
        return copy.deepcopy(model)  # Grad-CAM changes modes, flags and devices: never the caller's module
    if callable(model):
        built = model()
        if isinstance(built, nn.Module):
            return _build(built)
        raise RelabscopeError(f"the model factory returned {type(built).__name__}, not a torch.nn.Module")
    raise RelabscopeError(f"model must be a torch.nn.Module or a function that builds one, not {type(model).__name__}")


def _last_names(module: nn.Module, count: int = 4) -> list[str]:
    names = [name for name, _ in module.named_modules() if name]
    return names[-count:] or ["(none)"]
