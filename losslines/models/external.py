"""Models from outside the registry: your own factory by import path, and HuggingFace models.

* ``"package.module:factory"`` — ``factory(**options)`` builds the model; of ``num_classes``,
  ``input_shape`` and ``width`` it is also given those its signature names (so a factory written
  for losslines gets the dataset's sizes, and any other callable just its options). The module
  must be importable (installed, or on ``PYTHONPATH``).
* ``"hf:TYPE"`` — a HuggingFace ``transformers`` causal language model of model type ``TYPE``
  (``gpt2``, ``llama``, ...) built from a config, with fresh weights: no download. The config takes
  ``vocab_size = num_classes`` and, where the type has one, the context length from
  ``input_shape = (T,)``; ``options`` set any config field (``n_layer``, ``n_embd``, ...), and
  ``width`` scales the hidden size. Attention is HuggingFace's "eager" implementation (written-out
  matmul and softmax: the fused SDPA kernels have no forward-mode derivative on CPU, so exact
  slopes need it; ``attn_implementation`` overrides). Needs ``pip install 'losslines[hf]'``.
  Pretrained weights are not fetched: load them in a factory of your own, named by import path.
"""

from __future__ import annotations

from torch import nn

from losslines._imports import HF_PREFIX, call_with_sizes, is_import_path, load_object

__all__ = ["HF_PREFIX", "is_import_path", "build_from_path", "build_huggingface"]


def build_from_path(path: str, *, num_classes: int, input_shape: tuple[int, ...], width: float, **options) -> nn.Module:
    """Build ``path = "package.module:factory"`` (see the module docstring).

    Raises:
        ValueError: not importable, bad options, or the factory returned no ``nn.Module``.
    """
    factory = load_object(path, "model")
    sizes = {"num_classes": num_classes, "input_shape": tuple(input_shape), "width": width}
    model = call_with_sizes(factory, f"model {path!r}", sizes, options)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {path!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def build_huggingface(model_type: str, *, num_classes: int, input_shape: tuple[int, ...], width: float,
                      **options) -> nn.Module:
    """A causal LM of HuggingFace model type ``model_type`` with fresh weights (module docstring).

    Raises:
        ValueError: ``transformers`` is not installed, or the type or a config field is unknown.
    """
    try:
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise ValueError(f"model 'hf:{model_type}' needs the optional HuggingFace extra: "
                         "pip install 'losslines[hf]' (or pip install transformers)") from None
    try:
        config = AutoConfig.for_model(model_type)
    except (ValueError, KeyError) as err:
        raise ValueError(f"model 'hf:{model_type}': unknown HuggingFace model type ({err}); give a model type "
                         "such as gpt2 or llama, or load pretrained weights in your own factory "
                         "('package.module:factory')") from None
    attention = options.pop("attn_implementation", "eager")  # written-out attention: forward-mode AD and vmap work
    fields = {"vocab_size": num_classes, "use_cache": False, **options}  # no key/value cache in the outputs
    for name in ("n_positions", "max_position_embeddings"):
        if hasattr(config, name) and len(input_shape) == 1:
            fields.setdefault(name, max(int(getattr(config, name)), int(input_shape[0])))
    for name in ("n_embd", "hidden_size"):
        if hasattr(config, name) and width != 1.0:
            heads = int(getattr(config, "n_head", getattr(config, "num_attention_heads", 1)))
            fields.setdefault(name, heads * max(1, round(int(getattr(config, name)) * width / heads)))
    unknown = sorted(k for k in options if not hasattr(config, k) and k != "use_cache")
    if unknown:
        raise ValueError(f"model 'hf:{model_type}': unknown config field(s) {unknown}")
    for key, value in fields.items():
        setattr(config, key, value)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attention)
