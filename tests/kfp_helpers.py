"""Tiny settings shared by the tests (kept small: 2-core CI)."""

# the train_log.jsonl fields that measure time (they differ between identical runs)
TIMINGS = ("seconds", "sequences_per_s", "epoch_wall_s", "epoch_cpu_s")
# keyword options of components.train.trainer.train for a model that trains in a second or two
TINY_MODEL = {
    "max_len": 12,
    "d_model": 16,
    "n_blocks": 1,
    "n_heads": 2,
    "batch_size": 16,
    "threads": 1,
    "progress": False,
    "negatives": 8,
}

TINY_INGEST = {"num_users": 150, "num_items": 80, "num_domains": 5, "mean_length": 15, "seed": 1}
TINY_TRAIN = {
    "max_len": 20,
    "d_model": 16,
    "n_blocks": 1,
    "n_heads": 1,
    "batch_size": 64,
    "threads": 1,
    "progress": False,
    "seed": 0,
}
TINY_EPOCHS = 2
TINY_EVAL = {"bootstrap": 50}
TINY_REPORT = {"bootstrap": 50}

TINY_PARAMS = {
    "ingest_options": TINY_INGEST,
    "train_options": TINY_TRAIN,
    "epochs": TINY_EPOCHS,
    "eval_options": TINY_EVAL,
    "report_options": TINY_REPORT,
}
