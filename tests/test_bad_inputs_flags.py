"""Bad run, sweep and compare flags: one line naming the field and the flag, exit 2, before any model loads.
The worst of these once hung (a negative batch size looped forever) or were silently accepted (a negative
eval limit scored all but the last rows; zero steps logged an untrained run as a training run)."""

import pytest

from bad_inputs import Case, run_case
from conftest import requires_data

TRAIN = ["train", "--task", "sst2"]
SWEEP = ["sweep", "--task", "sst2", "--method", "p-tuning", "--storage", "sqlite:///{tmp}/optuna.db"]
SPACE_NEGATIVE_BATCH = "params:\n  train.batch_size: {low: -4, high: 8}\n"

CASES = [
    Case("batch-size-negative", [*TRAIN, "--batch-size", "-1"], "train.batch_size (--batch-size): -1 is not allowed"),
    Case("batch-size-zero", [*TRAIN, "--batch-size", "0"], "train.batch_size (--batch-size): 0 is not allowed"),
    Case("batch-size-text", [*TRAIN, "--batch-size", "abc"], "train.batch_size (--batch-size): 'abc'"),
    Case("eval-limit-negative", [*TRAIN, "--eval-limit", "-5"], "eval.limit (--eval-limit): -5 is not allowed"),
    Case("eval-limit-zero", [*TRAIN, "--eval-limit", "0"], "eval.limit (--eval-limit): 0 is not allowed"),
    Case("max-steps-zero", [*TRAIN, "--max-steps", "0"], "train.max_steps (--max-steps): 0 is not allowed"),
    Case("max-steps-negative", [*TRAIN, "--max-steps", "-3"], "train.max_steps (--max-steps): -3 is not allowed"),
    Case("lr-negative", [*TRAIN, "--lr", "-1"], "train.lr (--lr): -1 is not allowed; expected a number or null > 0"),
    Case("lr-nan", [*TRAIN, "--lr", "nan"], "train.lr (--lr): nan is not allowed"),
    Case("lr-zero", [*TRAIN, "--lr", "0"], "train.lr (--lr): 0 is not allowed"),
    Case("eval-every-zero", [*TRAIN, "--eval-every", "0"], "train.eval_every (--eval-every): 0 is not allowed"),
    Case("warmup-above-one", [*TRAIN, "--warmup-ratio", "2"], "train.warmup_ratio (--warmup-ratio): 2"),
    Case("grad-accum-zero", [*TRAIN, "--grad-accum", "0"], "train.grad_accum (--grad-accum): 0"),
    Case("patience-zero", [*TRAIN, "--patience", "0"], "train.patience (--patience): 0"),
    Case("shots-negative", [*TRAIN, "--shots", "-1"], "shots (--shots): -1 is not allowed"),
    Case("shots-zero", [*TRAIN, "--shots", "0"], "shots (--shots): 0 leaves method"),
    Case("template-id-negative", [*TRAIN, "--template-id", "-1"], "prompt.template_id (--template-id): -1"),
    Case("multi-token-unknown", [*TRAIN, "--multi-token", "last"], "prompt.multi_token (--multi-token): 'last'"),
    Case("save-unknown", [*TRAIN, "--save", "sometimes"], "tracking.save (--save): 'sometimes'"),
    Case("max-seq-length-tiny", [*TRAIN, "--max-seq-length", "2"], "prompt.max_seq_length (--max-seq-length): 2"),
    # Infinite and absurd numbers: each once trained, overflowed late or allocated far past any machine's memory.
    Case("lr-inf", [*TRAIN, "--lr", "inf"], "train.lr (--lr): inf is not allowed"),
    Case("lr-minus-inf", [*TRAIN, "--lr=-inf"], "train.lr (--lr): -inf is not allowed"),
    Case("lr-huge", [*TRAIN, "--lr", "1e6"], "train.lr (--lr): 1000000.0 is not allowed"),
    Case("weight-decay-inf", [*TRAIN, "--weight-decay", "inf"], "train.weight_decay (--weight-decay): inf"),
    Case("warmup-inf", [*TRAIN, "--warmup-ratio", "inf"], "train.warmup_ratio (--warmup-ratio): inf"),
    Case("seed-huge", [*TRAIN, "--seed", "99999999999999999999"],
         "seed (--seed): 99999999999999999999 is not allowed; expected an integer in [0, 4294967295]"),
    Case("seed-negative", [*TRAIN, "--seed", "-1"], "seed (--seed): -1 is not allowed"),
    Case("grad-accum-huge", [*TRAIN, "--grad-accum", "8000000"], "train.grad_accum (--grad-accum): 8000000"),
    Case("batch-size-huge", [*TRAIN, "--batch-size", "10000000"], "train.batch_size (--batch-size): 10000000"),
    Case("max-steps-huge", [*TRAIN, "--max-steps", "10000000000"], "train.max_steps (--max-steps): 10000000000"),
    Case("eval-limit-huge", [*TRAIN, "--eval-limit", "10000000000"], "eval.limit (--eval-limit): 10000000000"),
    Case("shots-huge", [*TRAIN, "--shots", "10000000"], "shots (--shots): 10000000 is not allowed"),
    Case("max-seq-length-huge", [*TRAIN, "--max-seq-length", "100000000"], "prompt.max_seq_length"),
    Case("lora-r-huge", [*TRAIN, "--method", "lora", "method.r=100000"], "method.r (--option r=...): 100000"),
    Case("prompt-tuning-tokens-huge", [*TRAIN, "--method", "prompt-tuning", "--option", "num_virtual_tokens=100000000"],
         "method.num_virtual_tokens (--option num_virtual_tokens=...): 100000000"),
    Case("prefix-hidden-huge", [*TRAIN, "--method", "prefix-tuning", "--option", "encoder_hidden_size=10000000"],
         "method.encoder_hidden_size"),
    Case("finetune-head-lr-inf", [*TRAIN, "--method", "finetune", "method.head_lr=inf"], "method.head_lr"),
    Case("config-lr-inf", [*TRAIN, "--config", "c.yaml"], ["c.yaml", "train.lr", "inf"],
         files={"c.yaml": "train: {lr: .inf}\n"}),
    Case("sweep-timeout-inf", [*SWEEP, "--timeout", "inf"], "sweep.timeout (--timeout): inf"),
    Case("sweep-trials-huge", [*SWEEP, "--trials", "100000000"], "sweep.trials (--trials): 100000000"),
    Case("sweep-final-seeds-huge", [*SWEEP, "--final-seeds", "13,99999999999"], ["sweep.final_seeds", "99999999999"]),
    Case("sweep-param-lr-inf", [*SWEEP, "--param", "lr=1e-4..inf"], ["train.lr", "inf"]),
    Case("compare-seeds-huge", ["compare", "--methods", "finetune", "--seeds", "13,99999999999"],
         ["compare.seeds", "99999999999"]),
    # the same seed twice is one run counted twice (n=2 from one run)
    Case("compare-seeds-duplicate", ["compare", "--methods", "finetune", "--seeds", "13,21,13"],
         "compare.seeds (--seeds): [13, 21, 13] is not allowed; expected each seed once (13 is given twice"),
    Case("sweep-final-seeds-duplicate", [*SWEEP, "--final-seeds", "13,13"],
         "sweep.final_seeds (--final-seeds): [13, 13] is not allowed; expected each seed once (13 is given twice"),
    Case("method-unknown", [*TRAIN, "--method", "magic"], "unknown method 'magic'"),
    Case("task-unknown", ["train", "--task", "nosuchtask"], "nosuchtask"),
    Case("calibrate-maybe", [*TRAIN, "--method", "icl", "--option", "calibrate=maybe"],
         "method.calibrate (--option calibrate=...): 'maybe' is not allowed; expected true or false"),
    Case("option-unknown", [*TRAIN, "--method", "lora", "--option", "rank=4"], ["method", "rank"]),
    Case("option-not-name-value", [*TRAIN, "--method", "lora", "--option", "r"], "--option"),
    Case("lora-r-zero", [*TRAIN, "--method", "lora", "method.r=0"], "method.r (--option r=...): 0 is not allowed"),
    Case("head-unknown", [*TRAIN, "--method", "lora", "--head", "mlp"], "method.head (--head): 'mlp'"),
    Case("finetune-head-lr-zero", [*TRAIN, "--method", "finetune", "method.head_lr=0"], "method.head_lr"),
    Case("finetune-pooling-unknown", [*TRAIN, "--method", "finetune", "method.pooling=max"], "method.pooling"),
    Case("override-unknown-field", [*TRAIN, "train.speed=3"], "train: unknown field(s) ['speed']"),
    Case("override-not-dotted-value", [*TRAIN, "train.lr"], "train.lr"),
    Case("config-max-steps-text", [*TRAIN, "--config", "c.yaml"], ["c.yaml", "train.max_steps", "'abc'"],
         files={"c.yaml": "train: {max_steps: abc}\n"}),
    Case("sweep-trials-zero", [*SWEEP, "--trials", "0"], "sweep.trials (--trials): 0 is not allowed"),
    Case("sweep-baseline-trials-negative", [*SWEEP, "--baseline-trials", "-1"],
         "sweep.baseline_trials (--baseline-trials): -1 is not allowed"),
    Case("sweep-space-negative-batch", [*SWEEP, "--space", "space.yaml"], ["space.yaml", "train.batch_size", "-4"],
         files={"space.yaml": SPACE_NEGATIVE_BATCH}),
    Case("sweep-param-negative-batch", [*SWEEP, "--param", "batch_size=-4..8"], ["train.batch_size", "-4"]),
    Case("sweep-param-lr-zero-low", [*SWEEP, "--param", "lr=0..1e-3"], ["train.lr", "0"]),
    Case("sweep-final-seeds-text", [*SWEEP, "--final-seeds", "13,abc"], "--final-seeds"),
    Case("sweep-trial-eval-limit-zero", [*SWEEP, "--trial-eval-limit", "0"], "sweep.trial_eval_limit"),
    Case("sweep-pruner-unknown", [*SWEEP, "--pruner", "sometimes"], "--pruner"),
    Case("compare-seeds-text", ["compare", "--seeds", "13,x"], "--seeds"),
    Case("compare-methods-twice", ["compare", "--methods", "finetune,finetune"], "compare.methods (--methods): a method is named twice"),
    Case("compare-baseline-not-compared", ["compare", "--methods", "finetune,lora", "--baseline", "icl"],
         "compare.baseline: 'icl' is not among the methods"),
    Case("compare-method-unknown", ["compare", "--methods", "finetune,magic"], "unknown method 'magic'"),
    Case("compare-max-steps-zero", ["compare", "--methods", "finetune", "--max-steps", "0"], "train.max_steps"),
]


@requires_data("sst2")
@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_flag_is_refused_in_one_line_before_the_model_loads(case, tmp_path, monkeypatch, capsys):
    run_case(case, tmp_path, monkeypatch, capsys)
