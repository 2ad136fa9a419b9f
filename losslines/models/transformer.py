"""Transformers for losslines' studies: a Vision Transformer for small images and a causal
byte-level language model, built from one pre-LayerNorm block.

* :class:`VisionTransformer` — 32×32 images cut into 4×4 patches (64 tokens) plus a class token,
  learned position embeddings, ``depth`` blocks, a LayerNorm and a linear head on the class token
  (Dosovitskiy et al. 2021, at CIFAR scale).
* :class:`ByteTransformerLM` — causal self-attention over token ids ``[n, T]`` (bytes: V = 256),
  learned position embeddings, ``depth`` blocks, a final LayerNorm and a head tied to the token
  embedding; returns logits ``[n, T, V]``. An optional ``attention_mask [n, T]`` (1 = attend,
  0 = padding) masks keys, so the model also takes HuggingFace-style dict inputs
  ``{"input_ids", "attention_mask"}``.

Attention is written out (matmul, softmax) rather than fused, so the forward is deterministic
and works under ``torch.func.vmap`` and forward-mode AD. Dropout (attention and residual) is 0
by default. ``width`` scales the embedding dimension (kept a multiple of ``heads``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from losslines.models.width import scaled


def _dim(dim: int, width: float, heads: int) -> int:
    """``dim · width`` rounded to a multiple of ``heads`` (at least one dimension per head)."""
    return heads * scaled(dim // heads, width)


class SelfAttention(nn.Module):
    """Multi-head self-attention, written out; ``causal`` masks future positions."""

    def __init__(self, dim: int, heads: int, causal: bool, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)  # [n, heads, t, t]
        lowest = torch.finfo(scores.dtype).min  # not -inf: a fully masked row stays finite
        if self.causal:
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, lowest)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], lowest)
        attn = self.drop(scores.softmax(dim=-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` (GELU)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, causal: bool, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, causal, dropout)
        hidden = max(1, int(round(dim * mlp_ratio)))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), key_mask))
        return x + self.drop(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT for small images (see the module docstring).

    Args:
        num_classes: logits per image.
        input_shape: ``(C, H, W)`` with H and W multiples of ``patch``.
        width: multiplier of ``dim``.
        dim, depth, heads, mlp_ratio, patch, dropout: the architecture (defaults: a ViT of
            ~1.8M parameters on 32×32 images).
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], width: float = 1.0, *, dim: int = 192,
                 depth: int = 6, heads: int = 3, mlp_ratio: float = 2.0, patch: int = 4, dropout: float = 0.0):
        super().__init__()
        c, h, w = input_shape
        if h % patch or w % patch:
            raise ValueError(f"vit: image size {h}x{w} is not a multiple of the patch size {patch}")
        d = _dim(dim, width, heads)
        self.patch = nn.Conv2d(c, d, kernel_size=patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, 1 + (h // patch) * (w // patch), d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads, mlp_ratio, causal=False, dropout=dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)  # [n, patches, d]
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens[:, 0]))


class ByteTransformerLM(nn.Module):
    """Causal transformer language model over token ids (see the module docstring).

    Args:
        num_classes: the vocabulary size V (256 for bytes).
        input_shape: ``(T,)``, the longest sequence (the position embeddings).
        width: multiplier of ``dim``.
        dim, depth, heads, mlp_ratio, dropout: the architecture (defaults: ~3.2M parameters at T = 64).
        tie: the output head shares the token embedding's weights.
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], width: float = 1.0, *, dim: int = 256,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0, tie: bool = True):
        super().__init__()
        if len(input_shape) != 1:
            raise ValueError(f"byte_lm needs input_shape (T,) of token sequences, got {tuple(input_shape)}")
        d = _dim(dim, width, heads)
        self.embed = nn.Embedding(num_classes, d)
        self.pos = nn.Parameter(torch.randn(1, input_shape[0], d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads, mlp_ratio, causal=True, dropout=dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_classes, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        if tie:
            self.head.weight = self.embed.weight

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        t = input_ids.shape[1]
        if t > self.pos.shape[1]:
            raise ValueError(f"byte_lm: sequences of {t} tokens exceed its {self.pos.shape[1]} positions")
        x = self.embed(input_ids) + self.pos[:, :t]
        for block in self.blocks:
            x = block(x, attention_mask)
        return self.head(self.norm(x))

