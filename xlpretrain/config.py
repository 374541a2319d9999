"""Experiment configs: loading `get_config(arg)` files, command-line overrides, validation.

A config is an `ml_collections.ConfigDict` returned by `get_config(arg)` in a Python file under
`configs/`. This module is the one place that turns a bad config into a clear one-line error, so
everything downstream can trust the config it is given.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import importlib.util
import inspect
import json
from pathlib import Path
from typing import Iterable

import ml_collections

from xlpretrain.data.corpora import DOCUMENT_FORMATS, NAMED_CORPORA, TFDS_PREFIX, WORD_CORPORA
from xlpretrain.errors import UserError
from xlpretrain.models.dropout import BITS
from xlpretrain.models.transformer import (ACTIVATIONS, ATTENTION_KERNELS, FLAVORS, POSITIONS, REMAT,
                                           TransformerXLConfig)

LEVELS = ("word", "char", "byte")
TOKENIZERS = ("wordpiece", "sentencepiece")
CORPORA = ("quickstart", "text") + NAMED_CORPORA


def defaults() -> ml_collections.ConfigDict:
    """Every config key with its default. Experiment configs start from this and change what they need."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.objective = "ar"

    c.data = ml_collections.ConfigDict()
    # "text": the files below; "quickstart": the built-in language; wt103, wt2, ptb, enwik8, text8,
    # lm1b: the benchmark, read as the official Transformer-XL code reads it (data/corpora.py);
    # "tfds:NAME" (e.g. tfds:wiki40b/en): a TFDS dataset prepared as array_record in data.dir.
    c.data.corpus = "text"
    c.data.dir = ""                # the folder holding the corpus (`xlpretrain data download NAME --dir DIR`)
    c.data.train, c.data.valid, c.data.test = "", "", ""  # file names in data.dir; "": the corpus's usual ones
    c.data.level = "word"          # text and tfds: "word" (whitespace tokens), "char" or "byte"
    c.data.eos = True              # text and tfds: end every line (example) with <eos> (official WikiText/PTB reading)
    c.data.tfds_text_key = "text"  # tfds: the feature holding the text
    # text, wt103, wt2, ptb: read the words with this word list (its order is the ids) instead of
    # counting one: a Transformer-XL release's vocab.pkl, or a text file of one word per line
    c.data.vocab_file = ""
    c.data.cache_dir = ""          # prepared corpora; default $XLPRETRAIN_CACHE or ~/.cache/xlpretrain
    c.data.quickstart = ml_collections.ConfigDict(
        dict(seed=0, train_tokens=2_000_000, valid_tokens=100_000, test_tokens=100_000))
    # Encoder objectives (mlm, rtd) read documents of WordPiece sentences and cut them into examples
    # of train.tgt_len (eval.tgt_len) tokens: data/corpora.py `load_documents`, data/examples.py.
    c.data.documents = "lines"     # "lines": BERT's one sentence a line, blank line between documents; "wikitext"
    c.data.wordpiece = ml_collections.ConfigDict(dict(vocab_file="", vocab_size=8192, lowercase=True))
    c.data.examples = ml_collections.ConfigDict(dict(seed=0, short_seq_prob=0.1, next_sentence=False))
    # The subword tokenizer of those documents: "wordpiece" (BERT, ELECTRA) or "sentencepiece" (XLNet).
    c.data.tokenizer = "wordpiece"
    c.data.sentencepiece = ml_collections.ConfigDict(dict(model_file="", vocab_size=8000, lowercase=False))

    c.model = ml_collections.ConfigDict()
    c.model.vocab_size = ml_collections.config_dict.placeholder(int)  # None: taken from the data
    c.model.n_layer, c.model.d_model, c.model.n_head, c.model.d_head, c.model.d_inner = 4, 256, 8, 32, 1024
    c.model.dropout, c.model.dropatt = 0.1, 0.0
    c.model.dropout_bits = 16      # random bits per dropout mask element: 16 or 32 (models/dropout.py)
    c.model.mem_len = 128
    c.model.clamp_len = -1
    c.model.same_length = False
    c.model.pre_lnorm = False
    c.model.untie_r = False
    c.model.init_std = 0.02
    # The bidirectional encoder of BERT and ELECTRA (models/transformer.py): causal=False,
    # positions="absolute", n_token_types=2, activation="gelu", layer_norm_eps=1e-12, flavor="bert".
    c.model.causal = True
    c.model.positions = "relative"
    c.model.max_positions = 512
    c.model.n_token_types = 0
    c.model.d_embed = 0            # 0: d_model
    c.model.activation = "relu"
    # Adaptive input and softmax (Transformer-XL's wt103 and lm1b): vocabulary bins cut at `cutoffs`
    # (ids are frequency-sorted), bin i of width d_embed // div_val**i; tie_projs[i]: bin i's output
    # projection is its input projection; proj_same_dim=False: no projection between equal widths
    # (the TF code's lm1b); projections are initialised N(0, proj_init_std).
    c.model.cutoffs = ()
    c.model.div_val = 1
    c.model.tie_projs = ()
    c.model.proj_same_dim = True
    c.model.proj_init_std = 0.01
    # Speed only: per tail bin, the share of a batch's tokens whose logits in that bin the training
    # loss computes (those whose targets are in it, as the official code's index_select); a batch
    # with more computes them all, so losses do not change. () computes every bin for every token.
    c.model.tail_capacity = ()
    c.model.layer_norm_eps = 1e-5
    c.model.flavor = "transformer_xl"
    # XLNet (flavor="xlnet", objective plm): the first reuse_len positions of a segment are cached
    # as memory (0: all of it); bi_data: the second half of the batch is reversed text, whose
    # relative distances are negated.
    c.model.reuse_len = 0
    c.model.bi_data = False
    # Activation memory: "none" keeps every activation for the backward pass; "full" keeps each
    # layer's input and recomputes the rest; "dots_saveable", "dots_with_no_batch_dims_saveable"
    # keep those matmul outputs (jax.checkpoint_policies). Same results, less memory, more FLOPs.
    c.model.remat = "none"
    # "bfloat16": the layers' matmuls in bfloat16, everything stored and the softmaxes in float32.
    c.model.dtype = "float32"
    # One layer's program run n_layer times (parameters stacked along a "layers" axis): compile
    # time independent of the depth. HuggingFace conversion needs it False.
    c.model.scan_layers = False
    # How attention without a relative term (positions="absolute": BERT, ELECTRA) is computed:
    # "einsum", this codebase's own; "xla" or "cudnn", jax.nn.dot_product_attention with that
    # implementation ("cudnn": the fused flash-attention kernel of NVIDIA GPUs, in bfloat16).
    # Neither of the two has attention dropout: they need model.dropatt=0.
    c.model.attention_kernel = "einsum"

    # Masking of the encoder objectives (objectives/masking.py); BERT's values.
    c.masking = ml_collections.ConfigDict(dict(
        mask_prob=0.15, max_predictions=20, whole_word=False, mask_frac=0.8, random_frac=0.1))
    c.masking.mask_id = ml_collections.config_dict.placeholder(int)  # None: the vocabulary's [MASK]
    # ELECTRA (objectives/rtd.py).
    c.rtd = ml_collections.ConfigDict(dict(
        generator_size=0.25, generator_layers=1.0, generator_weight=1.0, discriminator_weight=50.0, temperature=1.0))
    # XLNet's permutation sampling (objectives/permutation.py); the original's values for 512 tokens.
    # partial_k > 0 predicts tgt_len / partial_k tokens per sequence instead of num_predict.
    c.plm = ml_collections.ConfigDict(dict(num_predict=85, partial_k=0.0, perm_size=256, mask_alpha=6, mask_beta=1,
                                           max_span=5))

    c.train = ml_collections.ConfigDict()
    c.train.batch_size, c.train.tgt_len = 8, 128
    # Gradient accumulation: each step is micro_batches forward/backward passes over
    # batch_size / micro_batches rows each, with one update of their mean gradient; a Transformer-XL
    # micro-batch keeps its own rows of memory (the official code's batch_chunk).
    c.train.micro_batches = 1
    c.train.steps = 10_000
    c.train.lr, c.train.warmup_steps, c.train.min_lr_ratio = 2.5e-4, 0, 0.0
    c.train.clip_norm = 0.25
    c.train.schedule = "cosine"    # or "linear" (BERT, ELECTRA), "linear_after_warmup" (XLNet)
    c.train.weight_decay = 0.0     # > 0: AdamW, not on biases and LayerNorm scales (train/optim.py)
    c.train.adam_b1, c.train.adam_b2, c.train.adam_eps = 0.9, 0.999, 1e-8
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 100, 1000, 1000
    c.train.keep_checkpoints = 2   # the latest N; the best-valid one is kept as well

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 10         # columns, as the official eval.py
    c.eval.tgt_len, c.eval.mem_len, c.eval.clamp_len, c.eval.same_length = 128, 128, -1, False

    # Weights & Biases (never required): the metrics of metrics.jsonl also go to a W&B run named
    # after the workdir. mode "": W&B's default ($WANDB_MODE, else online); "offline" writes the run
    # under the workdir for a later `wandb sync`.
    c.wandb = ml_collections.ConfigDict(dict(enabled=False, project="xlpretrain", entity="", mode=""))

    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    # Logical axis name -> mesh axes (../shared/ARCHITECTURE.md, "Sharding is data").
    c.sharding_rules = (
        ("batch", ("data", "fsdp")),
        ("vocab", "tensor"),
        ("heads", "tensor"),
        ("mlp", "tensor"),
        ("embed", "fsdp"),
    )
    return c


def bert_encoder(config: ml_collections.ConfigDict, n_layer: int, d_model: int, n_head: int, d_embed: int = 0) -> None:
    """Makes `config.model` BERT's and ELECTRA's encoder (HuggingFace BertConfig/ElectraConfig):
    bidirectional, learned absolute positions (512), 2 token types, erf GELU, 4x feed-forward,
    LayerNorm eps 1e-12, dropout 0.1 on hidden states and attention weights, no memory."""
    config.model.update(n_layer=n_layer, d_model=d_model, n_head=n_head, d_head=d_model // n_head,
                        d_inner=4 * d_model, d_embed=d_embed, dropout=0.1, dropatt=0.1, mem_len=0, causal=False,
                        positions="absolute", max_positions=512, n_token_types=2, activation="gelu",
                        layer_norm_eps=1e-12, flavor="bert")
    config.eval.mem_len = 0


def bert_pretraining(config: ml_collections.ConfigDict) -> None:
    """BERT's pretraining recipe (bert `run_pretraining.py`, reference section 3): the `mlm`
    objective with next-sentence pairs on its 30,522-piece vocabulary, 80/10/10 masking of 15% with
    at most 20 predictions per 128 tokens, AdamW (lr 1e-4, eps 1e-6, weight decay 0.01), 10,000
    warm-up steps, linear decay over 1M steps of 256 x 128 tokens, clip 1."""
    config.objective = "mlm"
    config.data.update(dir="", documents="lines")
    config.data.wordpiece.vocab_size = 30522
    config.data.examples.next_sentence = True
    config.model.vocab_size = 30522
    config.masking.update(mask_prob=0.15, max_predictions=20, mask_frac=0.8, random_frac=0.1)
    config.train.update(batch_size=256, tgt_len=128, steps=1_000_000, lr=1e-4, warmup_steps=10_000,
                        schedule="linear", weight_decay=0.01, adam_eps=1e-6, clip_norm=1.0,
                        log_every=1000, eval_every=50_000, checkpoint_every=10_000)
    config.eval.update(batch_size=64, tgt_len=128)


def electra_pretraining(config: ml_collections.ConfigDict, lr: float, batch_size: int, seq_len: int, steps: int,
                        mask_prob: float, generator_size: float) -> None:
    """ELECTRA's pretraining recipe (electra `configure_pretraining.py`, reference section 2): the
    `rtd` objective on BERT's 30,522-piece vocabulary, no next-sentence pairs, masking [MASK] 85% /
    unchanged 15% with max_predictions = (mask_prob + 0.005) * seq_len, loss = MLM + 50 x
    discriminator, AdamW (eps 1e-6, weight decay 0.01), 10,000 warm-up steps, linear decay, clip 1."""
    config.objective = "rtd"
    config.data.update(dir="", documents="lines")
    config.data.wordpiece.vocab_size = 30522
    config.data.examples.next_sentence = False
    config.model.vocab_size = 30522
    config.masking.update(mask_prob=mask_prob, max_predictions=int((mask_prob + 0.005) * seq_len),
                          mask_frac=0.85, random_frac=0.0)
    config.rtd.update(generator_size=generator_size, generator_layers=1.0, generator_weight=1.0,
                      discriminator_weight=50.0, temperature=1.0)
    config.train.update(batch_size=batch_size, tgt_len=seq_len, steps=steps, lr=lr, warmup_steps=10_000,
                        schedule="linear", weight_decay=0.01, adam_eps=1e-6, clip_norm=1.0,
                        log_every=1000, eval_every=50_000, checkpoint_every=10_000)
    config.eval.update(batch_size=64, tgt_len=seq_len)


def xlnet_model(config: ml_collections.ConfigDict, n_layer: int, d_model: int, n_head: int) -> None:
    """Makes `config.model` XLNet's (released xlnet_config.json, HuggingFace XLNetConfig): the
    Transformer-XL backbone with flavor "xlnet", bidirectional, heads of 64, 4x feed-forward with
    tanh GELU, LayerNorm eps 1e-12, per-layer biases (untie_r), dropout 0.1 on hidden states and
    attention weights; pretraining memory: segments of 512 whose first 256 positions are cached,
    384 memory slots, bi_data (README command; kimiyoung in zihangdai/xlnet#59)."""
    config.model.update(n_layer=n_layer, d_model=d_model, n_head=n_head, d_head=64, d_inner=4 * d_model,
                        dropout=0.1, dropatt=0.1, mem_len=384, reuse_len=256, bi_data=True, clamp_len=-1,
                        causal=False, positions="relative", n_token_types=0, d_embed=0, activation="gelu_tanh",
                        layer_norm_eps=1e-12, untie_r=True, init_std=0.02, flavor="xlnet")
    config.eval.update(mem_len=384, clamp_len=-1, same_length=False)


def xlnet_pretraining(config: ml_collections.ConfigDict, batch_size: int, steps: int, lr: float,
                      warmup_steps: int) -> None:
    """XLNet's pretraining recipe (paper appendix A.4.1, zihangdai/xlnet README and train.py;
    reference section 1.3): the `plm` objective on a 32,000-piece SentencePiece vocabulary,
    sequences of 512 (reuse 256), 85 targets (K = 6) in spans of up to 5 pieces in contexts of 6
    per piece, perm_size 256; Adam with weight decay 0.01 and eps 1e-6, linear warm-up then linear
    decay to lr / 1000 (train.py's min_lr_ratio), clip 1."""
    config.objective = "plm"
    config.data.update(dir="", documents="lines", tokenizer="sentencepiece")
    config.data.sentencepiece.update(model_file="", vocab_size=32000, lowercase=False)
    config.model.vocab_size = 32000
    config.plm.update(num_predict=85, partial_k=0.0, perm_size=256, mask_alpha=6, mask_beta=1, max_span=5)
    config.train.update(batch_size=batch_size, tgt_len=512, steps=steps, lr=lr, warmup_steps=warmup_steps,
                        schedule="linear_after_warmup", min_lr_ratio=0.001, weight_decay=0.01, adam_eps=1e-6,
                        clip_norm=1.0, log_every=1000, eval_every=50_000, checkpoint_every=10_000)
    config.eval.update(batch_size=16, tgt_len=512)


def xlnet_cpu_variant(config: ml_collections.ConfigDict, steps: int) -> None:
    """The `:cpu` variant of an XLNet config: the same objective with a 4-layer, 256-wide model on
    ../shared/data/wikitext-2 read as documents, a SentencePiece vocabulary of 8,000 pieces trained
    on its train split, sequences of 128 (reuse 64, memory 96, perm_size 64, 128/6 = 21 targets),
    16 rows (bi_data: 8 forward, 8 reversed), learning rate 5e-4 with 10% of the steps as warm-up."""
    config.data.update(corpus="text", dir="../shared/data/wikitext-2", documents="wikitext")
    config.data.sentencepiece.update(model_file="", vocab_size=8000)
    config.model.update(vocab_size=None, n_layer=4, d_model=256, n_head=4, d_head=64, d_inner=1024, mem_len=96,
                        reuse_len=64)
    config.plm.update(partial_k=6.0, perm_size=64)
    config.train.update(batch_size=16, tgt_len=128, steps=steps, lr=5e-4, warmup_steps=steps // 10, log_every=50,
                        eval_every=steps, checkpoint_every=100)
    config.eval.update(batch_size=16, tgt_len=128, mem_len=96)


def cpu_variant(config: ml_collections.ConfigDict, n_layer: int, d_model: int, n_head: int, d_embed: int,
                batch_size: int, steps: int) -> None:
    """The `:cpu` variant of an encoder config: the same objective with a small encoder on
    ../shared/data/wikitext-2 read as documents, a WordPiece vocabulary of 8,192 pieces trained on
    its train split, examples of 128 tokens, learning rate 5e-4 with 10% of the steps as warm-up."""
    config.data.update(corpus="text", dir="../shared/data/wikitext-2", documents="wikitext")
    config.data.wordpiece.update(vocab_file="", vocab_size=8192)
    config.model.vocab_size = None
    bert_encoder(config, n_layer=n_layer, d_model=d_model, n_head=n_head, d_embed=d_embed)
    if config.objective == "rtd":  # ELECTRA's rule; BERT's 20 is already for 128 tokens
        config.masking.max_predictions = int((config.masking.mask_prob + 0.005) * 128)
    config.train.update(batch_size=batch_size, tgt_len=128, steps=steps, lr=5e-4, warmup_steps=steps // 10, log_every=50,
                        eval_every=steps, checkpoint_every=100)
    config.eval.update(batch_size=32, tgt_len=128)


def run_python_file(path: str | Path, kind: str, hint: str = ""):
    """Runs a config or sweep file (`kind`) as a module of its own and returns the module."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{kind} file {path} not found{hint}")
    module_spec = importlib.util.spec_from_file_location(f"xlpretrain_{kind}_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load(spec: str) -> ml_collections.ConfigDict:
    """Loads `path/to/config.py[:arg]` by calling the file's `get_config(arg)`."""
    path, _, arg = spec.partition(":")
    module = run_python_file(path, "config", "; pass --config path/to/config.py")
    if not hasattr(module, "get_config"):
        raise UserError(f"config file {path} defines no get_config(arg); see configs/quickstart.py")
    if arg and not inspect.signature(module.get_config).parameters:
        raise UserError(f"config file {path} takes no argument; drop ':{arg}'")
    return module.get_config(arg) if arg else module.get_config()


def from_json(text: str) -> ml_collections.ConfigDict:
    """Reads back the `config.json` a run wrote into its workdir; keys added to the defaults since
    the run was written take their default values."""
    def merge(base: dict, saved: dict) -> dict:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in saved.items()}}

    return ml_collections.ConfigDict(merge(defaults().to_dict(), json.loads(text)))


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def _flat_items(node: ml_collections.ConfigDict, prefix: str = "") -> dict:
    """Every key of a config, sections included, dotted, with its value."""
    items = {}
    for name, value in node.items():
        items[prefix + name] = value
        if isinstance(value, ml_collections.ConfigDict):
            items.update(_flat_items(value, prefix + name + "."))
    return items


def changed_settings(saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> list[str]:
    """'key: saved -> config' for each setting `config` gives (its placeholders aside: the data fills
    them in) that a run's saved config holds otherwise, as JSON values."""
    def normal(value):  # tuples and lists alike
        return json.loads(json.dumps(value))

    old, new = _flat_items(saved), _flat_items(config)
    return [f"{key}: {normal(old.get(key))} -> {normal(value)}" for key, value in new.items()
            if value is not None and not isinstance(value, ml_collections.ConfigDict)
            and normal(old.get(key)) != normal(value)]


def _unknown_key(config: ml_collections.ConfigDict, key: str) -> UserError:
    close = difflib.get_close_matches(key, list(_flat_items(config)), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return UserError(f"unknown config key {key!r}{hint}")


def _parse_value(text: str):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def override(config: ml_collections.ConfigDict, assignments: Iterable[str]) -> ml_collections.ConfigDict:
    """Applies `KEY=VALUE` assignments (from `--config.KEY=VALUE` flags) in place.

    Keys must exist; values are parsed as Python literals and must fit the field's type.
    """
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep:
            raise UserError(f"override {assignment!r} must look like --config.KEY=VALUE")
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            child = node.get(name) if isinstance(node, ml_collections.ConfigDict) else None
            if not isinstance(child, ml_collections.ConfigDict):
                raise _unknown_key(config, key)
            node = child
        if leaf not in node:
            raise _unknown_key(config, key)
        value = _parse_value(text)
        old = node[leaf]
        kind = node.get_type(leaf).__name__  # a placeholder's declared type, which its None value does not show
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        if value is None and old is not None:
            raise UserError(f"--config.{key}={text}: expected a value of type {kind}, not None")
        try:
            node[leaf] = value
        except TypeError:
            raise UserError(f"--config.{key}={text}: expected a value of type {kind}") from None
    return config


def for_eval(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config the evaluation protocol runs the model with: `config.eval`'s memory settings
    (`mem_len`, `clamp_len`, `same_length`) replace the training ones. The weights do not change."""
    evaluated = copy.deepcopy(config)
    for key in ("mem_len", "clamp_len", "same_length"):
        evaluated.model[key] = config.eval[key]
    return evaluated


def model_config(config: ml_collections.ConfigDict) -> TransformerXLConfig:
    """The backbone's frozen config from `config.model` (vocab_size must be filled in)."""
    fields = config.model.to_dict()
    return TransformerXLConfig(**dict(fields, cutoffs=tuple(fields["cutoffs"]), tie_projs=tuple(fields["tie_projs"]),
                                      tail_capacity=tuple(fields["tail_capacity"])))


def check_cutoffs(model: ml_collections.ConfigDict) -> None:
    """The adaptive softmax's settings, against the vocabulary size once it is known."""
    cutoffs = list(model.cutoffs)
    _require(all(isinstance(c, int) for c in cutoffs) and all(a < b for a, b in zip([0] + cutoffs, cutoffs)),
             f"model.cutoffs must be increasing positive word ids, got {cutoffs}")
    _require(model.vocab_size is None or not cutoffs or cutoffs[-1] < model.vocab_size,
             f"model.cutoffs {cutoffs} must end below the vocabulary size {model.vocab_size}")
    _require(model.div_val >= 1, f"model.div_val must be >= 1, got {model.div_val}")
    _require((not cutoffs and model.div_val == 1) or model.flavor == "transformer_xl",
             "model.cutoffs and model.div_val (adaptive softmax) are Transformer-XL's; use them with "
             "model.flavor='transformer_xl'")
    _require(len(model.tie_projs) <= len(cutoffs) + 1,
             f"model.tie_projs has {len(model.tie_projs)} entries for {len(cutoffs) + 1} bins")
    capacity = list(model.tail_capacity)
    _require(not capacity or (len(capacity) == len(cutoffs) and all(0 < c <= 1 for c in capacity)),
             f"model.tail_capacity must give one share in (0, 1] per tail bin ({len(cutoffs)}), got {capacity}")
    _require((model.d_embed or model.d_model) // model.div_val ** len(cutoffs) >= 1,
             f"model.div_val={model.div_val} leaves the last of {len(cutoffs) + 1} bins with no width")


# Settings a checkpoint does not depend on, which a resumed run may change like the learning rate:
# how a step is computed (a run trained with model.attention_kernel='cudnn' on GPUs goes on on a CPU
# with 'xla'), and the dropout rates and masks (the cuDNN kernel needs model.dropatt=0).
FREE_ON_RESUME = ("model.remat", "model.attention_kernel", "model.dropout", "model.dropatt", "model.dropout_bits")


def signature(config: ml_collections.ConfigDict) -> dict:
    """What a checkpoint depends on, by dotted key: the model (but FREE_ON_RESUME), the data, and
    the shapes of the carried memory, as JSON values (a tuple and the list config.json holds are
    the same). A workdir may be resumed with a config that changes anything else (steps, learning rate, ...)."""
    sections = ("model", "data", "rtd") if config.objective == "rtd" else ("model", "data")
    leaves = {key: value for key, value in _flat_items(config).items()
              if key.split(".")[0] in sections and not isinstance(value, ml_collections.ConfigDict)
              and key not in FREE_ON_RESUME}
    return json.loads(json.dumps({"objective": config.objective, "train.batch_size": config.train.batch_size, **leaves}))


def _validate_plm(config: ml_collections.ConfigDict) -> None:
    from xlpretrain.objectives.plm import num_predict

    model, plm = config.model, config.plm
    _require(model.flavor == "xlnet" and not model.causal and model.positions == "relative",
             "objective 'plm' runs XLNet's backbone; set model.flavor='xlnet', model.causal=False, "
             "model.positions='relative' (xlpretrain.config.xlnet_model)")
    _require(config.data.tokenizer == "sentencepiece",
             "objective 'plm' reads XLNet's SentencePiece pieces (<sep>, <cls>, <eod>); set data.tokenizer='sentencepiece'")
    for where in ("train", "eval"):
        length, batch = config[where].tgt_len, config[where].batch_size
        first, second = model.reuse_len, length - model.reuse_len
        _require(0 < model.reuse_len < length - 3,
                 f"model.reuse_len={model.reuse_len} must be in [1, {where}.tgt_len - 4 = {length - 4}]; "
                 f"XLNet uses tgt_len / 2")
        _require(first % plm.perm_size == 0 and second % plm.perm_size == 0,
                 f"plm.perm_size={plm.perm_size} must divide both halves of {where}.tgt_len={length} "
                 f"({first} and {second}); XLNet uses reuse_len")
        predict = num_predict(plm, length)
        _require(0 < predict and predict - predict // 2 <= first and predict // 2 <= second,
                 f"{predict} targets per sequence do not fit the halves of {where}.tgt_len={length}; "
                 f"set plm.num_predict (or plm.partial_k) so that about half fit in each")
        rows = batch // config.train.micro_batches if where == "train" else batch
        _require(not model.bi_data or rows % 2 == 0,
                 f"model.bi_data reverses half of each batch; {where}.batch_size={batch} must be even"
                 + (f" in each of train.micro_batches={config.train.micro_batches}" if rows != batch else ""))
    _require(plm.mask_alpha >= plm.mask_beta > 0 and plm.max_span >= 1 and plm.partial_k >= 0,
             "plm.mask_alpha >= plm.mask_beta > 0, plm.max_span >= 1 and plm.partial_k >= 0 are needed")


def _validate_rtd(config: ml_collections.ConfigDict) -> None:
    rtd, model = config.rtd, config.model
    _require(0.0 < rtd.generator_size <= 1.0 and 0.0 < rtd.generator_layers <= 1.0,
             "rtd.generator_size and rtd.generator_layers must be fractions in (0, 1]")
    _require(rtd.temperature > 0, f"rtd.temperature must be positive, got {rtd.temperature}")
    width, layers = round(model.d_model * rtd.generator_size), round(model.n_layer * rtd.generator_layers)
    _require(layers >= 1, f"rtd.generator_layers={rtd.generator_layers} of {model.n_layer} layers rounds to no "
                          f"layer; raise it")
    heads = max(1, width // 64)  # ELECTRA's generator: one head per 64 dimensions
    _require(width >= 1 and width % heads == 0,
             f"the generator's width, model.d_model x rtd.generator_size = {width}, must be a positive multiple of "
             f"its {heads} heads (one per 64), as BERT's attention requires; change rtd.generator_size")
    _require(not config.data.examples.next_sentence,
             "objective 'rtd' has no next-sentence loss; set data.examples.next_sentence=False")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def validate_data(data: ml_collections.ConfigDict) -> None:
    """Raises UserError naming the fix for the first problem found in the `data` section."""
    _require(data.corpus in CORPORA or (data.corpus.startswith(TFDS_PREFIX) and len(data.corpus) > len(TFDS_PREFIX)),
             f"data.corpus {data.corpus!r} is not one of {', '.join(CORPORA)} or {TFDS_PREFIX}NAME")
    _require(data.level in LEVELS, f"data.level {data.level!r} is not one of {', '.join(LEVELS)}")
    _require(data.documents in DOCUMENT_FORMATS,
             f"data.documents {data.documents!r} is not one of {', '.join(DOCUMENT_FORMATS)}")
    _require(data.tokenizer in TOKENIZERS, f"data.tokenizer {data.tokenizer!r} is not one of {', '.join(TOKENIZERS)}")
    _require(not data.vocab_file or data.corpus in ("text", *WORD_CORPORA),
             f"data.vocab_file is read by the word corpora text, {', '.join(WORD_CORPORA)}, not by {data.corpus}; "
             f"leave it empty")
    _require(not data.corpus.startswith(TFDS_PREFIX) or data.get("tfds_text_key"),
             "data.tfds_text_key must name the TFDS feature that holds the text")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises UserError naming the fix for the first problem found in `config`."""
    for section in ("data", "model", "train", "eval", "mesh", "masking", "rtd", "plm"):
        _require(section in config, f"config has no '{section}' section; start from configs/quickstart.py")
    from xlpretrain.objectives import REGISTRY  # here: the objectives read configs through this module

    _require(config.objective in REGISTRY, f"objective {config.objective!r} is not one of {', '.join(REGISTRY)}")
    encoder = REGISTRY[config.objective].data == "examples"  # bidirectional, fed with data/examples.py
    documents = REGISTRY[config.objective].data != "stream"  # read with load_documents

    validate_data(config.data)
    _require(not documents or config.data.corpus == "text",
             f"objective {config.objective!r} reads documents from text files; set data.corpus='text' and data.dir")

    model = config.model
    known = {f.name for f in dataclasses.fields(TransformerXLConfig)}
    for key in model.keys():
        _require(key in known, f"unknown config key 'model.{key}'")
    base = defaults()
    expected = _flat_items(base)
    for key in _flat_items(config):  # a misspelt key set in a config file would otherwise be ignored
        if key not in expected and not key.startswith("model."):
            raise _unknown_key(base, key)
    _require(model.n_head * model.d_head == model.d_model,
             f"model.n_head * model.d_head = {model.n_head} * {model.d_head} = "
             f"{model.n_head * model.d_head} must equal model.d_model = {model.d_model}; "
             f"set model.d_head={model.d_model // max(model.n_head, 1)}")
    _require(model.d_model % 2 == 0, f"model.d_model must be even for the sinusoid, got {model.d_model}")
    _require(model.n_layer > 0 and model.d_inner > 0, "model.n_layer and model.d_inner must be positive")
    for name in ("dropout", "dropatt"):
        _require(0.0 <= model[name] < 1.0, f"model.{name} must be in [0, 1), got {model[name]}")
    _require(model.dropout_bits in BITS, f"model.dropout_bits must be one of {', '.join(map(str, BITS))}, "
             f"got {model.dropout_bits}")
    for name, allowed in (("positions", POSITIONS), ("flavor", FLAVORS), ("activation", tuple(ACTIVATIONS)),
                          ("remat", tuple(REMAT)), ("dtype", ("float32", "bfloat16")),
                          ("attention_kernel", ATTENTION_KERNELS)):
        _require(model[name] in allowed, f"model.{name} {model[name]!r} is not one of {', '.join(allowed)}")
    if model.attention_kernel != "einsum":
        kernel = f"model.attention_kernel={model.attention_kernel!r}"
        _require(model.positions == "absolute",
                 f"{kernel} has no relative position term; use it with model.positions='absolute' or set "
                 f"model.attention_kernel='einsum'")
        _require(model.dropatt == 0, f"{kernel} has no attention dropout; set model.dropatt=0 or "
                                     f"model.attention_kernel='einsum'")
        if model.attention_kernel == "cudnn":
            _require(model.dtype == "bfloat16", f"{kernel} runs in bfloat16; set model.dtype='bfloat16'")
            _require(model.d_head % 8 == 0 and model.d_head <= 128,
                     f"{kernel} needs model.d_head a multiple of 8 up to 128, got {model.d_head}")
            _require(config.train.tgt_len % 2 == 0,
                     f"{kernel} trains with a padding mask only on even lengths; train.tgt_len is {config.train.tgt_len}")
    _require(model.d_embed >= 0, f"model.d_embed must be >= 0 (0: d_model), got {model.d_embed}")
    check_cutoffs(model)
    _require(model.positions == "relative" or (model.mem_len == 0 and config.eval.mem_len == 0),
             "absolute positions cannot be carried over a memory; set model.mem_len=0 and eval.mem_len=0")
    if model.positions == "absolute":
        for where in ("train", "eval"):
            _require(config[where].tgt_len <= model.max_positions,
                     f"{where}.tgt_len={config[where].tgt_len} exceeds model.max_positions={model.max_positions}")
    if encoder:
        _require(not model.causal, f"objective {config.objective!r} needs a bidirectional model; set model.causal=False")
        _require(model.mem_len == 0 and config.eval.mem_len == 0,
                 f"objective {config.objective!r} has no memory; set model.mem_len=0 and eval.mem_len=0")
        for where in ("train", "eval"):
            _require(config[where].tgt_len >= 8,
                     f"{where}.tgt_len={config[where].tgt_len} is too short for [CLS] A [SEP] B [SEP] examples")
        masking = config.masking
        _require(0.0 < masking.mask_prob < 1.0, f"masking.mask_prob must be in (0, 1), got {masking.mask_prob}")
        _require(0 < masking.max_predictions <= config.train.tgt_len,
                 f"masking.max_predictions must be in [1, train.tgt_len], got {masking.max_predictions}")
        _require(masking.mask_frac >= 0 and masking.random_frac >= 0 and masking.mask_frac + masking.random_frac <= 1,
                 "masking.mask_frac and masking.random_frac must be >= 0 with a sum <= 1")
    if config.objective != "plm":
        _require(model.reuse_len == 0 and not model.bi_data and model.flavor != "xlnet",
                 f"model.reuse_len, model.bi_data and model.flavor='xlnet' are XLNet's, for objective 'plm'; "
                 f"objective {config.objective!r} needs model.reuse_len=0, model.bi_data=False and another flavor")
    if config.objective == "ar":
        _require(model.causal, "objective 'ar' predicts each next token, which it must not see; set model.causal=True")
    types = {"stream": 0, "examples": 2, "xlnet": 3}[REGISTRY[config.objective].data]  # segment ids in the batches
    _require(model.n_token_types == 0 or (types and model.n_token_types >= types),
             f"objective {config.objective!r} feeds " + (f"segment ids 0 to {types - 1}; model.n_token_types must "
                                                         f"be 0 (none) or at least {types}" if types else
                                                         "no segment ids; set model.n_token_types=0")
             + f", got {model.n_token_types}")
    if config.objective == "plm":
        _validate_plm(config)
    if config.objective == "rtd":
        _validate_rtd(config)

    for where in ("model", "eval"):
        section = config[where]
        _require(section.mem_len >= 0,
                 f"{where}.mem_len must be >= 0 (0 turns the memory off), got {section.mem_len}")
        _require(section.clamp_len == -1 or section.clamp_len > 0,
                 f"{where}.clamp_len must be -1 (no clamping) or positive, got {section.clamp_len}")
        _require(not section.same_length or section.mem_len > 0,
                 f"{where}.same_length needs {where}.mem_len > 0 (each query sees exactly mem_len keys)")
        _require(not section.same_length or model.causal,
                 f"{where}.same_length is for causal attention (each query sees the mem_len keys before it); "
                 f"set {where}.same_length=False")

    for where in ("train", "eval"):
        section = config[where]
        _require(section.batch_size > 0, f"{where}.batch_size must be positive, got {section.batch_size}")
        _require(section.tgt_len > 0, f"{where}.tgt_len must be positive, got {section.tgt_len}")

    axes = tuple(config.mesh.keys())
    for rule in config.sharding_rules:
        target = rule[1] if isinstance(rule, (tuple, list)) and len(rule) == 2 else None
        targets = (target,) if isinstance(target, str) else target or ()
        _require(isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str)
                 and isinstance(targets, (tuple, list)) and all(axis in axes for axis in targets),
                 f"sharding_rules entry {rule!r} must be (logical axis name, mesh axis or tuple of mesh axes or "
                 f"None), the mesh axes being {', '.join(axes)}")

    train = config.train
    _require(train.steps > 0, f"train.steps must be positive, got {train.steps}")
    _require(train.lr > 0, f"train.lr must be positive, got {train.lr}")
    from xlpretrain.train.optim import SCHEDULES

    _require(train.schedule in SCHEDULES, f"train.schedule {train.schedule!r} is not one of {', '.join(SCHEDULES)}")
    _require(train.weight_decay >= 0, f"train.weight_decay must be >= 0, got {train.weight_decay}")
    _require(train.clip_norm > 0, f"train.clip_norm must be positive (the gradients' global norm is clipped "
                                  f"to it), got {train.clip_norm}")
    _require(0 <= train.min_lr_ratio <= 1, f"train.min_lr_ratio must be in [0, 1], got {train.min_lr_ratio}")
    _require(0 <= train.adam_b1 < 1 and 0 <= train.adam_b2 < 1 and train.adam_eps > 0,
             f"train.adam_b1 and train.adam_b2 must be in [0, 1) and train.adam_eps positive, got "
             f"{train.adam_b1}, {train.adam_b2} and {train.adam_eps}")
    _require(0 <= train.warmup_steps < train.steps,
             f"train.warmup_steps must be in [0, train.steps), got {train.warmup_steps}")
    for name in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
        _require(train[name] > 0, f"train.{name} must be positive, got {train[name]}")
    _require(train.checkpoint_every % train.log_every == 0,
             f"train.checkpoint_every ({train.checkpoint_every}) must be a multiple of train.log_every "
             f"({train.log_every}), so that a resumed run logs the same windows")
