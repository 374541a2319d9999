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
import json
from pathlib import Path
from typing import Iterable

import ml_collections

from xlpretrain.errors import UserError
from xlpretrain.models.transformer import TransformerXLConfig
from xlpretrain.objectives import REGISTRY as OBJECTIVES

LEVELS = ("word", "char", "byte")
CORPORA = ("quickstart", "text")


def defaults() -> ml_collections.ConfigDict:
    """Every config key with its default. Experiment configs start from this and change what they need."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.objective = "ar"

    c.data = ml_collections.ConfigDict()
    c.data.corpus = "text"         # "text": the files below; "quickstart": the built-in language
    c.data.dir = ""
    c.data.train, c.data.valid, c.data.test = "train.txt", "valid.txt", "test.txt"
    c.data.level = "word"          # "word" (whitespace tokens), "char" or "byte"
    c.data.eos = True              # end every line with <eos> (official WikiText/PTB reading)
    c.data.cache_dir = ""          # prepared corpora; default $XLPRETRAIN_CACHE or ~/.cache/xlpretrain
    c.data.quickstart = ml_collections.ConfigDict(
        dict(seed=0, train_tokens=2_000_000, valid_tokens=100_000, test_tokens=100_000))

    c.model = ml_collections.ConfigDict()
    c.model.vocab_size = ml_collections.config_dict.placeholder(int)  # None: taken from the data
    c.model.n_layer, c.model.d_model, c.model.n_head, c.model.d_head, c.model.d_inner = 4, 256, 8, 32, 1024
    c.model.dropout, c.model.dropatt = 0.1, 0.0
    c.model.mem_len = 128
    c.model.clamp_len = -1
    c.model.same_length = False
    c.model.pre_lnorm = False
    c.model.untie_r = False
    c.model.init_std = 0.02

    c.train = ml_collections.ConfigDict()
    c.train.batch_size, c.train.tgt_len = 8, 128
    c.train.steps = 10_000
    c.train.lr, c.train.warmup_steps, c.train.min_lr_ratio = 2.5e-4, 0, 0.0
    c.train.clip_norm = 0.25
    c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 100, 1000, 1000
    c.train.keep_checkpoints = 2   # the latest N; the best-valid one is kept as well

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 10         # columns, as the official eval.py
    c.eval.tgt_len, c.eval.mem_len, c.eval.clamp_len, c.eval.same_length = 128, 128, -1, False

    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    # Logical axis name -> mesh axes (ARCHITECTURE.md, "Sharding is data").
    c.sharding_rules = (
        ("batch", ("data", "fsdp")),
        ("vocab", "tensor"),
        ("heads", "tensor"),
        ("mlp", "tensor"),
        ("embed", "fsdp"),
    )
    return c


def load(spec: str) -> ml_collections.ConfigDict:
    """Loads `path/to/config.py[:arg]` by calling the file's `get_config(arg)`."""
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise UserError(f"config file {path} not found; pass --config path/to/config.py")
    module_spec = importlib.util.spec_from_file_location(f"xlpretrain_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"config file {path} defines no get_config(arg); see configs/quickstart.py")
    config = module.get_config(arg) if arg else module.get_config()
    return config


def from_json(text: str) -> ml_collections.ConfigDict:
    """Reads back the `config.json` a run wrote into its workdir."""
    return ml_collections.ConfigDict(json.loads(text))


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def _flat_keys(node: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in node.items():
        keys.append(prefix + name)
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(_flat_keys(value, prefix + name + "."))
    return keys


def _unknown_key(config: ml_collections.ConfigDict, key: str) -> UserError:
    close = difflib.get_close_matches(key, _flat_keys(config), n=1)
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
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        try:
            node[leaf] = value
        except TypeError:
            raise UserError(
                f"--config.{key}={text}: expected a value of type {type(old).__name__}"
            ) from None
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
    return TransformerXLConfig(**config.model.to_dict())


def signature(config: ml_collections.ConfigDict) -> dict:
    """What a checkpoint depends on: the model, the data, and the shapes of the carried memory.
    A workdir may be resumed with a config that changes anything else (steps, learning rate, ...)."""
    return {
        "model": config.model.to_dict(),
        "data": config.data.to_dict(),
        "train.batch_size": config.train.batch_size,
    }


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises UserError naming the fix for the first problem found in `config`."""
    for section in ("data", "model", "train", "eval", "mesh"):
        _require(section in config, f"config has no '{section}' section; start from configs/quickstart.py")
    _require(config.objective in OBJECTIVES,
             f"objective {config.objective!r} is not one of {', '.join(sorted(OBJECTIVES))}")

    data = config.data
    _require(data.corpus in CORPORA, f"data.corpus {data.corpus!r} is not one of {', '.join(CORPORA)}")
    _require(data.level in LEVELS, f"data.level {data.level!r} is not one of {', '.join(LEVELS)}")

    model = config.model
    known = {f.name for f in dataclasses.fields(TransformerXLConfig)}
    for key in model.keys():
        _require(key in known, f"unknown config key 'model.{key}'")
    _require(model.n_head * model.d_head == model.d_model,
             f"model.n_head * model.d_head = {model.n_head} * {model.d_head} = "
             f"{model.n_head * model.d_head} must equal model.d_model = {model.d_model}; "
             f"set model.d_head={model.d_model // max(model.n_head, 1)}")
    _require(model.d_model % 2 == 0, f"model.d_model must be even for the sinusoid, got {model.d_model}")
    _require(model.n_layer > 0 and model.d_inner > 0, "model.n_layer and model.d_inner must be positive")
    for name in ("dropout", "dropatt"):
        _require(0.0 <= model[name] < 1.0, f"model.{name} must be in [0, 1), got {model[name]}")

    for where in ("model", "eval"):
        section = config[where]
        _require(section.mem_len >= 0,
                 f"{where}.mem_len must be >= 0 (0 turns the memory off), got {section.mem_len}")
        _require(section.clamp_len == -1 or section.clamp_len > 0,
                 f"{where}.clamp_len must be -1 (no clamping) or positive, got {section.clamp_len}")
        _require(not section.same_length or section.mem_len > 0,
                 f"{where}.same_length needs {where}.mem_len > 0 (each query sees exactly mem_len keys)")

    for where in ("train", "eval"):
        section = config[where]
        _require(section.batch_size > 0, f"{where}.batch_size must be positive, got {section.batch_size}")
        _require(section.tgt_len > 0, f"{where}.tgt_len must be positive, got {section.tgt_len}")

    train = config.train
    _require(train.steps > 0, f"train.steps must be positive, got {train.steps}")
    _require(train.lr > 0, f"train.lr must be positive, got {train.lr}")
    _require(0 <= train.warmup_steps < train.steps,
             f"train.warmup_steps must be in [0, train.steps), got {train.warmup_steps}")
    for name in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
        _require(train[name] > 0, f"train.{name} must be positive, got {train[name]}")
    _require(train.checkpoint_every % train.log_every == 0,
             f"train.checkpoint_every ({train.checkpoint_every}) must be a multiple of train.log_every "
             f"({train.log_every}), so that a resumed run logs the same windows")
