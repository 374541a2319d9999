"""HuggingFace BERT and ELECTRA weights <-> xlpretrain params, both ways, from one name table.

Covers `BertForMaskedLM` and `BertForPreTraining` (-> `mlm`), `ElectraForMaskedLM` (the generator
as an `mlm` model) and `ElectraForPreTraining` (the discriminator of `rtd`). A torch `Linear`
weight is [out, in]; a Flax kernel is [in, out], and the attention kernels split the feature axis
into (heads, head_dim) with the head major, as HuggingFace's `view(..., heads, head_dim)`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from xlpretrain.errors import UserError


@dataclasses.dataclass(frozen=True)
class Entry:
    """HuggingFace tensors `hf` <-> our parameter at `path`.

    linear_in: for a torch Linear weight, how many leading axes of our kernel form its input
    (1 for [d_model, heads, head_dim], 2 for [heads, head_dim, d_model]); 0 for anything copied
    as it is (tables, LayerNorm vectors) or only reshaped (biases). With several `hf` tensors (key
    and value; one per layer) our parameter stacks them along `stack_axis`. `transpose`: our
    parameter is the HuggingFace tensor with its axes in this order (XLNet's output projection).
    """

    hf: tuple[str, ...]
    path: tuple[str, ...]
    linear_in: int = 0
    stack_axis: int = 0
    transpose: tuple[int, ...] = ()


def linear(hf: str, path: tuple[str, ...]) -> list[Entry]:
    return [Entry((hf + ".weight",), path + ("kernel",), 1), Entry((hf + ".bias",), path + ("bias",))]


def norm(hf: str, path: tuple[str, ...]) -> list[Entry]:
    return [Entry((hf + ".weight",), path + ("scale",)), Entry((hf + ".bias",), path + ("bias",))]


def embedding_entries(hf: str, path: tuple[str, ...]) -> list[Entry]:
    """`{hf}.embeddings.*` <-> our `Embeddings` at `path`."""
    return [Entry((f"{hf}.embeddings.word_embeddings.weight",), path + ("vocab", "embedding")),
            Entry((f"{hf}.embeddings.position_embeddings.weight",), path + ("position",)),
            Entry((f"{hf}.embeddings.token_type_embeddings.weight",), path + ("token_type",)),
            *norm(f"{hf}.embeddings.LayerNorm", path + ("norm",))]


def encoder_entries(hf: str, path: tuple[str, ...], n_layer: int, projected: bool) -> list[Entry]:
    """`{hf}.encoder.layer.*` (and ELECTRA's `{hf}.embeddings_project`) <-> our backbone's layers."""
    entries = linear(f"{hf}.embeddings_project", path + ("project",)) if projected else []
    for i in range(n_layer):
        p, ours = f"{hf}.encoder.layer.{i}.", path + (f"layer_{i}",)
        attn = ours + ("attn",)
        entries += [
            Entry((p + "attention.self.query.weight",), attn + ("q",), 1),
            Entry((p + "attention.self.query.bias",), attn + ("q_bias",)),
            Entry((p + "attention.self.key.weight", p + "attention.self.value.weight"), attn + ("kv",), 1, 1),
            Entry((p + "attention.self.key.bias", p + "attention.self.value.bias"), attn + ("kv_bias",), 0, 0),
            Entry((p + "attention.output.dense.weight",), attn + ("o",), 2),
            Entry((p + "attention.output.dense.bias",), attn + ("o_bias",)),
            *norm(p + "attention.output.LayerNorm", ours + ("norm_attn",)),
            *linear(p + "intermediate.dense", ours + ("ff", "inner")),
            *linear(p + "output.dense", ours + ("ff", "outer")),
            *norm(p + "output.LayerNorm", ours + ("norm_ff",)),
        ]
    return entries


def masked_lm_entries(architecture: str, n_layer: int, projected: bool, next_sentence: bool) -> list[Entry]:
    """`BertForMaskedLM` / `BertForPreTraining` / `ElectraForMaskedLM` <-> `mlm.MaskedLMModel`."""
    if architecture == "ElectraForMaskedLM":
        head = [*linear("generator_predictions.dense", ("head", "dense")),
                *norm("generator_predictions.LayerNorm", ("head", "norm")),
                Entry(("generator_lm_head.bias",), ("encoder", "embed", "vocab", "bias"))]
        return embedding_entries("electra", ("encoder", "embed")) + encoder_entries(
            "electra", ("encoder",), n_layer, projected) + head
    head = [*linear("cls.predictions.transform.dense", ("head", "dense")),
            *norm("cls.predictions.transform.LayerNorm", ("head", "norm")),
            Entry(("cls.predictions.bias",), ("encoder", "embed", "vocab", "bias"))]
    if next_sentence:
        head += [*linear("bert.pooler.dense", ("nsp", "pooler")),
                 *linear("cls.seq_relationship", ("nsp", "classifier"))]
    return embedding_entries("bert", ("encoder", "embed")) + encoder_entries("bert", ("encoder",), n_layer, False) + head


def discriminator_entries(n_layer: int, projected: bool) -> list[Entry]:
    """`ElectraForPreTraining` <-> the discriminator side of `rtd.Electra`."""
    return (embedding_entries("electra", ("embeddings",))
            + encoder_entries("electra", ("discriminator",), n_layer, projected)
            + linear("discriminator_predictions.dense", ("discriminator_head", "dense"))
            + linear("discriminator_predictions.dense_prediction", ("discriminator_head", "prediction")))


def generator_entries(n_layer: int, projected: bool) -> list[Entry]:
    """`ElectraForMaskedLM` <-> the generator side of `rtd.Electra` (embeddings are the discriminator's)."""
    return (encoder_entries("electra", ("generator",), n_layer, projected)
            + linear("generator_predictions.dense", ("generator_head", "dense"))
            + norm("generator_predictions.LayerNorm", ("generator_head", "norm"))
            + [Entry(("generator_lm_head.bias",), ("embeddings", "vocab", "bias"))])


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict, path, value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def import_weights(state: Mapping[str, np.ndarray], entries: list[Entry], like) -> dict:
    """HuggingFace `state` (name -> array) -> a params tree shaped as `like` (shapes only needed)."""
    params = {}
    for entry in entries:
        missing = [k for k in entry.hf if k not in state]
        if missing:
            raise UserError(f"the checkpoint has no tensor {missing[0]}; is it the architecture its config.json names?")
        target = _get(like, entry.path).shape
        piece_shape = tuple(np.delete(target, entry.stack_axis)) if len(entry.hf) > 1 else target
        pieces = [np.asarray(state[k]).T if entry.linear_in else np.asarray(state[k]) for k in entry.hf]
        if entry.transpose:
            pieces = [p.transpose(entry.transpose) for p in pieces]
        if any(p.size != math.prod(piece_shape) for p in pieces):
            raise UserError(f"{entry.hf[0]} has shape {pieces[0].shape}, but the config gives {piece_shape}; "
                            f"the checkpoint's config.json does not describe its weights")
        pieces = [p.reshape(piece_shape) for p in pieces]
        _set(params, entry.path, np.stack(pieces, entry.stack_axis) if len(pieces) > 1 else pieces[0])
    return params


def export_weights(params, entries: list[Entry]) -> dict[str, np.ndarray]:
    """Our params -> HuggingFace state (name -> float32 array), the inverse of `import_weights`."""
    state = {}
    for entry in entries:
        value = np.asarray(_get(params, entry.path), np.float32)
        pieces = np.moveaxis(value, entry.stack_axis, 0) if len(entry.hf) > 1 else [value]
        for name, piece in zip(entry.hf, pieces):
            if entry.linear_in:
                piece = piece.reshape(math.prod(piece.shape[:entry.linear_in]), -1).T
            elif entry.transpose:
                piece = piece.transpose(np.argsort(entry.transpose))
            elif name.endswith(".bias"):
                piece = piece.reshape(-1)
            state[name] = np.ascontiguousarray(piece)
    return state
