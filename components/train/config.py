"""The train step's options: ``TrainConfig`` (every option but the model's, which are
``ModelConfig``), their checks, and ``split_options`` (keyword options → the two configs).

The defaults written here are the only ones: the CLI (``components.train.cli``) reads them from
the dataclass fields. Importing this module never imports torch.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

from components.core.devices import DEVICES
from components.core.model_config import DERIVED, ModelConfig
from components.core.weighting import PARAMETER_NAMES, SCHEMES, WeightingSpec
from components.core.weighting.spec import option_name
from components.errors import ConfigError
from components.options import Checked

LOSSES = ("ce", "sampled", "bce", "gbce", "mml")  # the base losses (components.train.losses)
DECAYS = ("none", "linear", "cosine")
OPTIMIZERS = ("adam", "adamw")
# what a batch's loss is divided by: batch = its own number of targets (every batch weighs the
# same); token = its users × the mean targets per user of the train split (every target weighs
# the same, whatever the batch: length-bucketed batches then optimise what shuffled ones do)
LOSS_NORMS = ("batch", "token")
# autocast: auto = bf16 on recent GPUs, fp16 on old ones, fp32 on CPU (components.train.distributed)
PRECISIONS = ("auto", "fp32", "bf16")  # adam: L2 weight decay in the gradient; adamw: decoupled
# where the training windows come from: memory = the whole train split loaded and batched in
# this process (components.train.data); stream = the ingest step's sharded training view, read
# per (rank, worker) in bounded memory (components.train.streaming)
DATA_SOURCES = ("memory", "stream")
# the cut-offs of the validation pass (components.train.validation) and the metrics it gives,
# any of which can keep the best epoch
VALIDATION_CUTOFFS = (10, 20)
SELECT_METRICS = tuple(f"{m}@{k}" for m in ("ndcg", "recall") for k in VALIDATION_CUTOFFS)


@dataclass
class TrainConfig(Checked):
    """Every option of the train step except the model's (those are in ModelConfig)."""

    scheme: str = "none"  # none | fixed | inverse | dynamic | dro | dynamic-user (SPEC §5)
    loss: str = "ce"  # ce | sampled | bce | gbce | mml (SPEC §6)
    epochs: int = 50
    batch_size: int = 64  # users per optimiser step (global, across DDP processes)
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    decay: str = "none"  # none | linear | cosine, to 0 at the last step of `epochs`
    # max gradient norm; 0 = off (the reference's; with loss_norm token clipping only slowed it)
    grad_clip: float = 0.0
    loss_norm: str = "token"  # batch | token: the divisor of a batch's loss (LOSS_NORMS)
    patience: int = 5  # early stopping: epochs without a better select_metric; 0 = off
    select_metric: str = "ndcg@10"  # validation metric that keeps the best epoch
    # the run's evaluation protocol: the user's earlier items out of the ranking (validation
    # here; evaluate reads it from config.json and refuses another one)
    exclude_seen: bool = False
    seed: int = 0
    negatives: int = 128  # R (sampled) or k (gbce, mml); bce uses 1
    temperature: float = 1.0  # sampled softmax
    gbce_t: float = 0.75
    # aux-domain (SPEC §5): λ of a next-domain head's loss, Σ(ω·ℓ_item + λ·ℓ_domain) / N; 0 = off
    aux_domain: float = 0.0
    # every WeightingSpec parameter; None = as weights.json recorded (the stats step's options)
    fixed_domains: list[str] | None = None  # fixed: the boosted domains
    fixed_weight: float | None = None  # fixed: w_d of the boosted domains
    gamma: float | None = None  # inverse: power of (p̄ / p_d)
    w_min: float | None = None  # lower clip bound of every target and of dynamic
    w_max: float | None = None  # upper clip bound
    beta: float | None = None  # dynamic: EMA factor
    target: str | None = None  # dynamic: inverse | composite
    lambdas: tuple[float, float, float] | None = None  # composite: IDF, user, entropy
    alpha: float | None = None  # composite: w = 1 + alpha * zscore(S)
    agg: str | None = None  # ω of a multi-domain item: mean | max of its domains' weights
    update_every_steps: int | None = None  # dynamic: 0 = update at each epoch end
    eta: float | None = None  # dro: step size of q_g ← q_g·exp(η·ℓ̃_g)
    user_theta: float | None = None  # dynamic-user: share of the user's history, in (0, 1]
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    compile: bool = False  # torch.compile the model (CUDA)
    precision: str = "auto"  # auto | fp32 | bf16 (PRECISIONS): the autocast of training
    val_batch_size: int = 1024
    # > 1: batch users of similar length, sorting runs of N batches (less padding; with
    # loss_norm token the same objective as a plain shuffle); 0 or 1: plain shuffle. --data
    # stream: not used (the view's shuffle buffer orders the windows)
    length_buckets: int = 16
    data: str = "memory"  # memory | stream: where the training windows come from (DATA_SOURCES)
    # stream: DataLoader workers per rank reading the view; 0 = the training process reads
    # (batches are the same with 0 and 1; 1+ overlaps reading with training); the view's
    # --train-shards must be a multiple of world size × max(workers, 1)
    data_workers: int = 0
    stop_after_epochs: int = 0  # stop this invocation after N epochs (resume later); 0 = off
    progress: bool = True  # tqdm progress bar on rank 0
    record_test: bool = False  # benchmarks: log test metrics each epoch (never used to select)

    def validate(self) -> None:
        """ConfigError naming the option and what is allowed; runs before anything is read
        (and in the pipeline's pre-run check). --negatives above the catalogue size is checked
        by LossFunction once the dataset is known, still before training."""
        for name, allowed in (
            ("scheme", SCHEMES),
            ("loss", LOSSES),
            ("device", DEVICES),
            ("decay", DECAYS),
            ("optimizer", OPTIMIZERS),
            ("select_metric", SELECT_METRICS),
            ("data", DATA_SOURCES),
            ("loss_norm", LOSS_NORMS),
            ("precision", PRECISIONS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(
                    f"{option_name(name)}: unknown {name} {value!r}; choose one of {list(allowed)}"
                )
        # integers: name → smallest allowed value
        for name, low in (
            ("epochs", 1),
            ("batch_size", 1),
            ("val_batch_size", 1),
            ("negatives", 1),
            ("warmup_steps", 0),
            ("patience", 0),
            ("seed", 0),
            ("threads", 0),
            ("length_buckets", 0),
            ("data_workers", 0),
            ("stop_after_epochs", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"{option_name(name)}: expected an integer, got {value!r}")
            if value < low:
                raise ConfigError(f"{option_name(name)} must be >= {low}, got {value}")
        # real numbers: name → (test, what is allowed); NaN and inf fail every test
        reals = {
            "lr": (lambda v: v > 0, "> 0"),
            "weight_decay": (lambda v: v >= 0, ">= 0"),
            "grad_clip": (lambda v: v >= 0, ">= 0 (0 = off)"),
            "temperature": (lambda v: v > 0, "> 0"),
            "gbce_t": (lambda v: 0 <= v <= 1, "in [0, 1]"),
            "aux_domain": (lambda v: v >= 0, ">= 0 (0 = off)"),
        }
        for name, (ok, what) in reals.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"{option_name(name)}: expected a number, got {value!r}")
            if not math.isfinite(value) or not ok(value):
                raise ConfigError(
                    f"{option_name(name)} must be {what} (a finite number), got {value}"
                )
        for name in ("compile", "progress", "exclude_seen", "record_test"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"{option_name(name)}: expected true or false, got {getattr(self, name)!r}"
                )
        if self.data == "memory" and self.data_workers:
            raise ConfigError("--data-workers applies to --data stream only, not --data memory")
        WeightingSpec(scheme=self.scheme, **self.weighting_given())  # checks the given values

    def weighting_given(self) -> dict:
        """The weighting parameters given explicitly (the others: as weights.json recorded)."""
        return {k: getattr(self, k) for k in WEIGHTING_OPTIONS if getattr(self, k) is not None}


# the TrainConfig fields that are WeightingSpec parameters: given, they override weights.json
WEIGHTING_OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.name in PARAMETER_NAMES)
# the ModelConfig fields that are train options (n_items, n_domains come from the dataset)
MODEL_OPTIONS = tuple(f.name for f in fields(ModelConfig) if f.name not in DERIVED)


def split_options(options: dict) -> tuple[TrainConfig, dict]:
    """Keyword options → (TrainConfig, model options); unknown names are a ConfigError."""
    train_names = {f.name for f in fields(TrainConfig)}
    model_names = set(MODEL_OPTIONS)
    unknown = sorted(set(options) - train_names - model_names)
    if unknown:
        raise ConfigError(f"train: unknown option(s) {unknown}")
    cfg = TrainConfig(**{k: v for k, v in options.items() if k in train_names})  # checked
    return cfg, {k: v for k, v in options.items() if k in model_names}
