"""Everything a config implies before a step runs: the corpus, the objective, the mesh and the
shardings, the optimizer, and the jitted train step. `train`, `eval`, `bench` and `params` share it.
"""

from __future__ import annotations

import contextlib
import copy

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax

from xlpretrain import config as config_lib
from xlpretrain import objectives, parallel
from xlpretrain.data import corpora
from xlpretrain.data.examples import ExampleStream, build_examples
from xlpretrain.data.stream import OrderedStream
from xlpretrain.data.xlnet import XLNetStream
from xlpretrain.errors import UserError
from xlpretrain.train import optim
from xlpretrain.train.state import TrainState

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


class Experiment:
    """`with_data=False` builds the model side alone (parameter counts, conversion), which needs
    `model.vocab_size` in the config."""

    def __init__(self, config: ml_collections.ConfigDict, with_data: bool = True):
        config = copy.deepcopy(config)
        config_lib.validate(config)
        self.data = objectives.REGISTRY[config.objective].data
        self.corpus = self.documents = None
        if with_data and self.data != "stream":
            self.documents = corpora.load_documents(config.data)
            self._fill(config, "model.vocab_size", len(self.documents.tokenizer))
            self._fill(config, "masking.mask_id", self.documents.tokenizer.mask_id)
        elif with_data:
            self.corpus = corpora.load(config.data)
            self._fill(config, "model.vocab_size", len(self.corpus.vocab))
            config_lib.check_cutoffs(config.model)
        elif config.model.vocab_size is None:
            raise UserError("model.vocab_size is not set; set it, or give the data it is taken from")
        self.config = config
        self._example_sets = {}
        self.mesh = parallel.make_mesh(config.mesh)
        self.rules = parallel.rules(config)
        for where in ("train", "eval"):
            parallel.check_batch_size(config[where].batch_size, self.mesh, self.rules, where)
        self.objective = objectives.build(config)
        self.tx = optim.optimizer(config.train)
        self.batch_sharding = parallel.batch_sharding(self.mesh, self.rules)

        boxed = jax.eval_shape(self._init_boxed, jax.random.PRNGKey(0))
        self.state_shapes = nn.meta.unbox(boxed)
        specs = nn.get_partition_spec(boxed).replace(memory=self.objective.memory_axes)
        self.state_shardings = parallel.shardings(self.mesh, self.rules, specs)
        parallel.check_divisible(self.state_shapes.params, self.state_shardings.params)

    @contextlib.contextmanager
    def context(self):
        """Tracing under this context applies the logical-axis rules to activation constraints."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            yield

    def _init_boxed(self, rng) -> TrainState:
        params = self.objective.init_params(rng)
        return TrainState(step=np.int32(0), params=params, opt_state=self.tx.init(params), rng=rng,
                          memory=self.objective.init_memory(self.config.train.batch_size))

    @staticmethod
    def _fill(config: ml_collections.ConfigDict, key: str, value: int) -> None:
        """Sets a field the data determines, or checks the value the config gives."""
        section, name = key.split(".")
        given = config[section][name]
        if given is None:
            config[section][name] = value
        elif given != value:
            raise UserError(f"{key}={given} but the data gives {value}; set {key}=None to take it from the data")

    def init_state(self) -> TrainState:
        init = jax.jit(lambda rng: nn.meta.unbox(self._init_boxed(rng)), out_shardings=self.state_shardings)
        return init(jax.random.PRNGKey(self.config.seed))

    def param_count(self) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.state_shapes.params))

    def param_report(self) -> list[tuple[str, int]]:
        """The objective's breakdown of the parameter count, then the total."""
        return self.objective.param_report(self.state_shapes.params) + [("total", self.param_count())]

    def param_shardings(self) -> list[str]:
        """One line per parameter: its path, shape and PartitionSpec on this mesh."""
        return [f"{name:<64} {str(shape):<16} {sharding.spec}"
                for name, shape, sharding in parallel.named_leaves(self.state_shapes.params, self.state_shardings.params)]

    def to_global(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This host's rows of a batch -> global arrays split along the batch axis of the mesh."""
        return parallel.to_global(batch, self.batch_sharding)

    def batch_shapes(self, section: str = "train") -> dict[str, jax.ShapeDtypeStruct]:
        """The global batch of `config[section]` as shapes, dtypes and shardings, without the data."""
        sizes = self.config[section]
        if self.data == "stream":
            shapes = OrderedStream.batch_shapes(sizes.batch_size, sizes.tgt_len)
        elif self.data == "xlnet":
            shapes = XLNetStream.batch_shapes(sizes.batch_size, sizes.tgt_len)
        else:
            shapes = ExampleStream.batch_shapes(sizes.batch_size, sizes.tgt_len, self.config.data.examples.next_sentence)
        return {name: jax.ShapeDtypeStruct(shape, dtype, sharding=self.batch_sharding)
                for name, (shape, dtype) in shapes.items()}

    def train_step(self):
        """The jitted step (state, batch) -> (state, metrics); the old state's buffers are donated."""
        objective, tx = self.objective, self.tx

        def step(state: TrainState, batch):
            rng = jax.random.fold_in(state.rng, state.step)
            grad_fn = jax.value_and_grad(objective.loss, has_aux=True)
            (loss, (memory, metrics)), grads = grad_fn(state.params, batch, state.memory, rng, True)
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            state = TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                               opt_state=opt_state, rng=state.rng, memory=memory)
            return state, {"objective": metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}

        return jax.jit(step, in_shardings=(self.state_shardings, self.batch_sharding),
                       out_shardings=(self.state_shardings, None), donate_argnums=0)

    def stream(self, split: str, section: str = "train") -> OrderedStream | ExampleStream | XLNetStream:
        """This host's part of `split`, cut by `config[section]`'s batch_size and tgt_len: columns
        of the token stream, rows of examples of tgt_len tokens for the encoder objectives, or
        XLNet's examples that continue each row's memory."""
        sizes = self.config[section]
        host = parallel.process_rows(self.batch_sharding, sizes.batch_size)
        if self.data == "stream":
            return OrderedStream(self.corpus.splits[split], sizes.batch_size, sizes.tgt_len, *host, name=split)
        settings = self.config.data.examples
        if self.data == "xlnet":
            model = self.config.model
            return XLNetStream(self.documents.splits[split], self.documents.tokenizer, sizes.batch_size, sizes.tgt_len,
                               model.reuse_len, model.bi_data, settings.seed, *host, name=split)
        key = (split, sizes.tgt_len)
        if key not in self._example_sets:
            self._example_sets[key] = build_examples(self.documents.splits[split], self.documents.tokenizer,
                                                     sizes.tgt_len, settings.next_sentence, settings.short_seq_prob,
                                                     settings.seed)
        return ExampleStream(self._example_sets[key], self.documents.tokenizer, sizes.batch_size, self.config.seed,
                             *host, settings.next_sentence, name=split)

    def report(self, summary: dict, split: str) -> dict:
        """A metrics line: bpc on character data, and on evaluation lines the true entropy rate when
        the corpus knows it."""
        line = dict(summary)
        if self.corpus is None:
            return line
        if self.corpus.level in ("char", "byte"):
            line["bpc"] = line["bits_per_token"]
        if split != "train" and self.corpus.true_bits_per_token is not None:
            line["true_bits_per_token"] = self.corpus.true_bits_per_token
        return line
