"""fairseq's ``transformer_iwslt_de_en`` on PyTorch's fused attention.

The architecture (fairseq's ``transformer_iwslt_de_en``, Vaswani et al. 2017's base
Transformer made smaller): 6 encoder and 6 decoder layers, width 512, feed-forward
1024, 4 heads, ReLU, post-norm (LayerNorm after each residual sum, no final LayerNorm),
sinusoidal positions (fairseq's table: sines then cosines, positions counted from
``<pad>``'s index + 1), token embeddings scaled by sqrt(width), the decoder's input
embedding shared with its output projection, dropout 0.3 after the embeddings, the
attention/feed-forward blocks (no attention or activation dropout, as in the recipe).
Initialisation as fairseq: embeddings N(0, width^-1/2) with a zero ``<pad>`` row; attention
projections Xavier-uniform (queries, keys and values with gain 1/sqrt(2)), the output
projection's bias zero; feed-forward layers and the other biases PyTorch's defaults.

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`, the
fused kernels (flash / memory-efficient / cuDNN on a GPU). Decoding is incremental: each
layer caches its self-attention keys and values and the projected encoder output
(:class:`DecoderState`), so a step costs one position, not the whole prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dictionary import PAD_INDEX


@dataclass(frozen=True)
class TransformerConfig:
    layers: int = 6
    dim: int = 512
    ffn_dim: int = 1024
    heads: int = 4
    dropout: float = 0.3
    max_positions: int = 1024


# The architectures by name; "transformer_tiny" is for tests and CPU checks.
ARCHITECTURES = {
    "transformer_iwslt_de_en": TransformerConfig(),
    "transformer_tiny": TransformerConfig(layers=2, dim=64, ffn_dim=128, heads=4, dropout=0.1,
                                          max_positions=256),
}


def parameter_count(config: TransformerConfig, src_vocab: int, tgt_vocab: int) -> int:
    """The parameters the architecture implies (for the parameter-count test):
    both embeddings (the decoder's shared with the output), then per layer the attention
    blocks (4 projections with biases), the feed-forward block and the LayerNorms."""
    d, f = config.dim, config.ffn_dim
    attention = 4 * (d * d + d)
    ffn = d * f + f + f * d + d
    encoder_layer = attention + ffn + 2 * 2 * d
    decoder_layer = 2 * attention + ffn + 3 * 2 * d
    return (src_vocab + tgt_vocab) * d + config.layers * (encoder_layer + decoder_layer)


def sinusoidal_positions(num: int, dim: int) -> Tensor:
    """fairseq's SinusoidalPositionalEmbedding table: row ``p`` holds sin(p w), cos(p w)
    for w = 10000^(-i / (dim/2 - 1)); row PAD_INDEX is zero."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = torch.arange(num, dtype=torch.float32)[:, None] * freq[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    table[PAD_INDEX] = 0
    return table


class Attention(nn.Module):
    """Multi-head attention: queries from ``x``, keys and values from ``memory`` (cross
    attention) or from ``x`` (self attention), through the fused kernel."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        for weight in (self.q.weight, *self.kv.weight.chunk(2)):
            nn.init.xavier_uniform_(weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def split_heads(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def keys_values(self, source: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv(source).chunk(2, dim=-1)
        return self.split_heads(k), self.split_heads(v)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        """``mask``: (B, 1, 1, S) True where a key may be attended to."""
        out = F.scaled_dot_product_attention(self.split_heads(self.q(x)), k, v, attn_mask=mask,
                                             is_causal=causal)
        return self.out(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ffn_dim: int):
        super().__init__(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))


class EncoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.attention = Attention(config.dim, config.heads)
        self.attention_norm = nn.LayerNorm(config.dim)
        self.ffn = FeedForward(config.dim, config.ffn_dim)
        self.ffn_norm = nn.LayerNorm(config.dim)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, *self.attention.keys_values(x), mask)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.self_attention = Attention(config.dim, config.heads)
        self.self_attention_norm = nn.LayerNorm(config.dim)
        self.cross_attention = Attention(config.dim, config.heads)
        self.cross_attention_norm = nn.LayerNorm(config.dim)
        self.ffn = FeedForward(config.dim, config.ffn_dim)
        self.ffn_norm = nn.LayerNorm(config.dim)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, self_kv: tuple[Tensor, Tensor], cross_kv: tuple[Tensor, Tensor],
                src_mask: Tensor, causal: bool) -> Tensor:
        x = self.self_attention_norm(x + self.dropout(self.self_attention(x, *self_kv, causal=causal)))
        x = self.cross_attention_norm(x + self.dropout(self.cross_attention(x, *cross_kv, src_mask)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


@dataclass
class DecoderState:
    """What incremental decoding keeps between steps, per layer: the self-attention keys and
    values so far and the cross-attention keys and values of the encoder output."""

    src_mask: Tensor
    cross: list[tuple[Tensor, Tensor]]
    past: list[tuple[Tensor, Tensor] | None]
    step: int = 0

    def select(self, index: Tensor) -> "DecoderState":
        """Keep (and reorder) batch rows ``index``: beams that survive, sentences still open."""
        def pick(kv):
            return None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))
        return DecoderState(self.src_mask.index_select(0, index), [pick(kv) for kv in self.cross],
                            [pick(kv) for kv in self.past], self.step)


class Transformer(nn.Module):
    """Encoder-decoder Transformer; ``forward(src, prev)`` gives the logits for teacher forcing."""

    def __init__(self, src_vocab: int, tgt_vocab: int, config: TransformerConfig = TransformerConfig()):
        super().__init__()
        self.config = config
        self.src_embed = self._embedding(src_vocab, config.dim)
        self.tgt_embed = self._embedding(tgt_vocab, config.dim)  # also the output projection
        self.encoder = nn.ModuleList(EncoderLayer(config) for _ in range(config.layers))
        self.decoder = nn.ModuleList(DecoderLayer(config) for _ in range(config.layers))
        self.dropout = nn.Dropout(config.dropout)
        self.scale = math.sqrt(config.dim)
        self.register_buffer("positions", sinusoidal_positions(config.max_positions + PAD_INDEX + 1, config.dim),
                             persistent=False)

    @staticmethod
    def _embedding(vocab: int, dim: int) -> nn.Embedding:
        embedding = nn.Embedding(vocab, dim, padding_idx=PAD_INDEX)
        nn.init.normal_(embedding.weight, std=dim ** -0.5)
        with torch.no_grad():
            embedding.weight[PAD_INDEX].zero_()
        return embedding

    def _embed(self, embedding: nn.Embedding, tokens: Tensor, first_position: int = 0) -> Tensor:
        start = PAD_INDEX + 1 + first_position
        positions = self.positions[start:start + tokens.size(1)]
        return self.dropout(self.scale * embedding(tokens) + positions)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """The encoder output (B, S, D) and the source mask (B, 1, 1, S), True on real tokens."""
        mask = (src != PAD_INDEX)[:, None, None, :]
        x = self._embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, mask)
        return x, mask

    def forward(self, src: Tensor, prev: Tensor) -> Tensor:
        memory, mask = self.encode(src)
        x = self._embed(self.tgt_embed, prev)
        for layer in self.decoder:
            # Targets are right-padded: the causal mask alone keeps every real position from
            # seeing padding; what padded positions compute is never scored.
            x = layer(x, layer.self_attention.keys_values(x), layer.cross_attention.keys_values(memory),
                      mask, causal=True)
        return F.linear(x, self.tgt_embed.weight)

    def start_decoding(self, memory: Tensor, src_mask: Tensor) -> DecoderState:
        return DecoderState(src_mask, [layer.cross_attention.keys_values(memory) for layer in self.decoder],
                            [None] * len(self.decoder))

    def decode_step(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """Logits (B, V) for the next token, given the last token of each row (B,);
        extends ``state`` in place by one position."""
        x = self._embed(self.tgt_embed, tokens[:, None], first_position=state.step)
        for i, layer in enumerate(self.decoder):
            k, v = layer.self_attention.keys_values(x)
            if state.past[i] is not None:
                k, v = torch.cat([state.past[i][0], k], dim=2), torch.cat([state.past[i][1], v], dim=2)
            state.past[i] = (k, v)
            x = layer(x, (k, v), state.cross[i], state.src_mask, causal=False)
        state.step += 1
        return F.linear(x[:, 0], self.tgt_embed.weight)
