"""Bad input to `workbench instruct mix | self-instruct | serve`: each row is refused in one line naming the flag
or the file (and line or record), with exit code 2, no traceback, before any model weights load (see
tests/bad_inputs.py). A few checks that do not fit a row (a port in use, files left as they were) follow."""

from __future__ import annotations

import json
import os
import socket

import pytest
from bad_inputs import Case, run_case

SEED = {"id": "s1", "name": "n", "instruction": "Name three rivers in Europe.",
        "instances": [{"input": "", "output": "Rhine, Danube, Seine"}], "is_classification": False}
SEED_LINE = json.dumps(SEED)
SEEDS_OK = "\n".join(json.dumps({**SEED, "id": f"s{i}", "instruction": f"Name {i} rivers in Europe."})
                     for i in range(1, 4)) + "\n"
RECORD = json.dumps({"id": "machine_0", "instruction": "Describe a rainy day in the city.",
                     "instances": [{"input": "", "output": "Wet."}], "request_idx": 0})
LOCAL = "http://127.0.0.1:9/v1"  # nothing listens on port 9: these rows must fail before any request
GSM = json.dumps({"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"})
SI = ["instruct", "self-instruct", "--no-mlflow"]
MIX = ["instruct", "mix", "--no-mlflow"]
SERVE = ["instruct", "serve"]
DATA = {"WORKBENCH_DATA_DIR": "{tmp}/data"}

CASES = [
    # ---- mix: values -------------------------------------------------------------------------------------------
    Case("mix-cap-negative", [*MIX, "--cap", "-5"], "--cap: -5 is not allowed"),
    Case("mix-cap-zero", [*MIX, "--cap", "0"], "--cap: 0 is not allowed"),
    Case("mix-cap-text", [*MIX, "--cap", "lots"], "--cap: 'lots' is not allowed"),
    Case("mix-total-negative", [*MIX, "--rates", "sst2=1", "--total", "-5"], "--total: -5 is not allowed"),
    Case("mix-total-without-rates", [*MIX, "--total", "100"], ["--total", "--rates"]),
    Case("mix-max-per-dataset-negative", [*MIX, "--max-per-dataset", "-1"], "--max-per-dataset: -1 is not allowed"),
    Case("mix-tasks-duplicate", [*MIX, "--tasks", "sst2,sst2"], ["--tasks", "'sst2' is given twice"]),
    Case("mix-tasks-unknown", [*MIX, "--tasks", "sst3"], ["--tasks", "'sst3'"]),
    Case("mix-tasks-empty-item", [*MIX, "--tasks", "sst2,,trec"], "--tasks"),
    Case("mix-tasks-with-rates", [*MIX, "--tasks", "trec", "--rates", "sst2=1"], ["--tasks", "--rates"]),
    Case("mix-rates-not-pairs", [*MIX, "--rates", "sst2"], "--rates: 'sst2' is not allowed"),
    Case("mix-rates-negative", [*MIX, "--rates", "sst2=-1"], "--rates sst2: -1.0 is not allowed"),
    Case("mix-rates-nan", [*MIX, "--rates", "sst2=nan"], "--rates sst2: nan is not allowed"),
    Case("mix-rates-all-zero", [*MIX, "--rates", "sst2=0,trec=0"], ["--rates", "at least one rate > 0"]),
    Case("mix-rates-duplicate", [*MIX, "--rates", "sst2=1,sst2=2"], ["--rates", "'sst2' is given twice"]),
    Case("mix-rates-unknown-task", [*MIX, "--rates", "sst9=1"], ["--rates", "'sst9'"]),
    Case("mix-zero-shot-ratio-above-one", [*MIX, "--zero-shot-ratio", "1.5"], "--zero-shot-ratio: 1.5 is not allowed"),
    Case("mix-options-ratio-negative", [*MIX, "--options-ratio", "-0.1"], "--options-ratio: -0.1 is not allowed"),
    Case("mix-shots-zero", [*MIX, "--shots", "0,1"], "--shots: '0,1' is not allowed"),
    Case("mix-shots-text", [*MIX, "--shots", "one,two"], "--shots: 'one,two' is not allowed"),
    Case("mix-token-budget-zero", [*MIX, "--token-budget", "0"], "--token-budget: 0 is not allowed"),
    Case("mix-seed-text", [*MIX, "--seed", "abc"], "--seed: 'abc' is not allowed"),
    Case("mix-holdout-unknown", [*MIX, "--holdout", "nope"], "--holdout: 'nope' is not allowed"),
    Case("mix-holdout-everything", [*MIX, "--tasks", "sst2", "--holdout", "sst2"], ["--holdout", "no task"]),
    Case("mix-tokenizer-missing", [*MIX, "--tasks", "sst2", "--tokenizer", "{tmp}/no-tokenizer"], "--tokenizer"),
    # ---- mix: files ----------------------------------------------------------------------------------------------
    Case("mix-out-is-a-file", [*MIX, "--out", "taken"], ["--out taken", "is a file"], files={"taken": "x\n"}),
    Case("mix-out-unwritable", [*MIX, "--out", "/sys/mixture"], ["--out /sys/mixture", "cannot write"]),
    Case("mix-templates-dir-missing", [*MIX, "--templates-dir", "{tmp}/nope"], ["--templates-dir", "not found"]),
    Case("mix-template-not-utf8", [*MIX, "--tasks", "sst2", "--templates-dir", "tpl"], ["sst2.yaml: line 2", "UTF-8"],
         files={"tpl/sst2.yaml": b"task: sst2\ntemplates: [\xff]\n"}),
    Case("mix-template-yaml-aliases", [*MIX, "--tasks", "sst2", "--templates-dir", "tpl"],
         ["sst2.yaml: line 2", "YAML aliases"], files={"tpl/sst2.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\nl1: &l1 [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nl2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\nl3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]\nl4: &l4 [*l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3]\nl5: &l5 [*l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4]\nl6: &l6 [*l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5]\nl7: &l7 [*l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6]\nl8: &l8 [*l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7]\n"}),
    Case("mix-template-is-a-folder", [*MIX, "--tasks", "sst2", "--templates-dir", "tpl"], ["sst2.yaml", "folder"],
         files={"tpl/sst2.yaml/inside.txt": "x"}),
    Case("mix-template-turned-around-not-bool", [*MIX, "--tasks", "sst2", "--templates-dir", "tpl"],
         ["sst2.yaml: line 3", "turned_around"],
         files={"tpl/sst2.yaml": "task: sst2\ntemplates:\n  - input: '{sentence}'\n    target: '{answer}'\n"
                                 "    turned_around: 'no'\n"}),
    Case("mix-gsm8k-not-json", [*MIX, "--tasks", "gsm8k"], "gsm8k/train.jsonl: line 2: not valid JSON",
         files={"data/gsm8k/train.jsonl": GSM + "\n{oops\n"}, env=DATA),
    Case("mix-gsm8k-missing-field", [*MIX, "--tasks", "gsm8k"], ["train.jsonl: line 2", "'question'"],
         files={"data/gsm8k/train.jsonl": GSM + "\n" + json.dumps({"answer": "#### 3"}) + "\n"}, env=DATA),
    Case("mix-gsm8k-not-utf8", [*MIX, "--tasks", "gsm8k"], ["train.jsonl: line 2", "UTF-8"],
         files={"data/gsm8k/train.jsonl": GSM.encode() + b"\n\xc3\x28\n"}, env=DATA),
    Case("mix-multiarith-missing-field", [*MIX, "--tasks", "multiarith"], ["test.json: record 1", "'sQuestion'"],
         files={"data/multiarith/test.json": json.dumps([{"iIndex": 0, "sQuestion": "1+1?", "lSolutions": [2]},
                                                         {"iIndex": 1, "lSolutions": [3]}])}, env=DATA),
    Case("mix-svamp-answer-not-a-number", [*MIX, "--tasks", "svamp"], ["test.json: record 0", "'Answer'"],
         files={"data/svamp/test.json": json.dumps([{"ID": "a", "Body": "B.", "Question": "Q?", "Answer": "x"}])},
         env=DATA),
    # ---- self-instruct: values -------------------------------------------------------------------------------------
    Case("si-threshold-above-one", [*SI, "--threshold", "5"], "--threshold: 5.0 is not allowed"),
    Case("si-threshold-zero", [*SI, "--threshold", "0"], "--threshold: 0.0 is not allowed"),
    Case("si-threshold-negative", [*SI, "--threshold", "-0.2"], "--threshold: -0.2 is not allowed"),
    Case("si-threshold-nan", [*SI, "--threshold", "nan"], "--threshold: nan is not allowed"),
    Case("si-threshold-text", [*SI, "--threshold", "high"], "--threshold: 'high' is not allowed"),
    Case("si-num-zero", [*SI, "--num", "0"], "--num: 0 is not allowed"),
    Case("si-num-negative", [*SI, "--num", "-3"], "--num: -3 is not allowed"),
    Case("si-num-text", [*SI, "--num", "ten"], "--num: 'ten' is not allowed"),
    Case("si-prompts-per-round-zero", [*SI, "--prompts-per-round", "0"], "--prompts-per-round: 0 is not allowed"),
    Case("si-instruction-max-tokens-zero", [*SI, "--instruction-max-tokens", "0"], "--instruction-max-tokens: 0"),
    Case("si-instance-max-tokens-negative", [*SI, "--instance-max-tokens", "-1"], "--instance-max-tokens: -1"),
    Case("si-batch-size-zero", [*SI, "--batch-size", "0"], "--batch-size: 0 is not allowed"),
    Case("si-batch-size-text", [*SI, "--batch-size", "big"], "--batch-size: 'big' is not allowed"),
    Case("si-threads-zero", [*SI, "--threads", "0"], "--threads: 0 is not allowed"),
    Case("si-concurrency-zero", [*SI, "--api-base", LOCAL, "--concurrency", "0"], "--concurrency: 0 is not allowed"),
    Case("si-timeout-zero", [*SI, "--api-base", LOCAL, "--timeout", "0"], "--timeout: 0.0 is not allowed"),
    Case("si-timeout-text", [*SI, "--api-base", LOCAL, "--timeout", "soon"], "--timeout: 'soon' is not allowed"),
    Case("si-retries-negative", [*SI, "--api-base", LOCAL, "--retries", "-1"], "--retries: -1 is not allowed"),
    Case("si-api-base-scheme", [*SI, "--api-base", "ftp://127.0.0.1/v1"], "--api-base: 'ftp://127.0.0.1/v1'"),
    Case("si-api-base-no-scheme", [*SI, "--api-base", "localhost:8000/v1"], "--api-base: 'localhost:8000/v1'"),
    Case("si-api-base-bad-port", [*SI, "--api-base", "http://127.0.0.1:99999/v1"], "--api-base"),
    Case("si-api-key-env-unset", [*SI, "--api-base", LOCAL, "--api-key-env", "WB_TEST_NO_SUCH_KEY"],
         "--api-key-env WB_TEST_NO_SUCH_KEY"),
    Case("si-api-key-env-without-api-base", [*SI, "--api-key-env", "HOME"], ["--api-key-env", "--api-base"]),
    Case("si-timeout-without-api-base", [*SI, "--timeout", "5"], ["--timeout", "--api-base"]),
    Case("si-chat-with-api-base", [*SI, "--api-base", LOCAL, "--chat"], ["--chat", "local model"]),
    Case("si-model-missing", [*SI, "--model", "{tmp}/no-such-model"], ["--model", "no-such-model"]),
    # ---- self-instruct: seed file --------------------------------------------------------------------------------
    Case("si-seeds-missing", [*SI, "--seeds", "nope.jsonl"], ["nope.jsonl", "not found"]),
    Case("si-seeds-folder", [*SI, "--seeds", "seeds"], ["seeds", "is a folder"], files={"seeds/a.jsonl": SEED_LINE}),
    Case("si-seeds-fifo", [*SI, "--seeds", "seeds.jsonl"], ["seeds.jsonl", "named pipe"], fifos=["seeds.jsonl"]),
    Case("si-seeds-dev-zero", [*SI, "--seeds", "/dev/zero"], ["/dev/zero", "is a device"]),
    Case("si-seeds-not-utf8", [*SI, "--seeds", "seeds.jsonl"], ["seeds.jsonl: line 2", "UTF-8"],
         files={"seeds.jsonl": SEED_LINE.encode() + b"\n\xff\xfe\n"}),
    Case("si-seeds-not-json", [*SI, "--seeds", "seeds.jsonl"], ["seeds.jsonl: line 2", "not valid JSON"],
         files={"seeds.jsonl": SEED_LINE + "\n{broken\n"}),
    Case("si-seeds-missing-field", [*SI, "--seeds", "seeds.jsonl"], ["seeds.jsonl: line 1", "'instruction'"],
         files={"seeds.jsonl": json.dumps({k: v for k, v in SEED.items() if k != "instruction"}) + "\n"}),
    Case("si-seeds-wrong-type", [*SI, "--seeds", "seeds.jsonl"], ["seeds.jsonl: line 1", "'is_classification'"],
         files={"seeds.jsonl": json.dumps({**SEED, "is_classification": "no"}) + "\n"}),
    Case("si-seeds-empty", [*SI, "--seeds", "seeds.jsonl"], ["seeds.jsonl", "no seed tasks"],
         files={"seeds.jsonl": "\n"}),
    Case("si-seeds-too-few-for-alpaca", [*SI, "--style", "alpaca", "--seeds", "seeds.jsonl"],
         ["seeds.jsonl", "at least 3"], files={"seeds.jsonl": SEED_LINE + "\n"}),
    # ---- self-instruct: output file ------------------------------------------------------------------------------
    Case("si-out-folder-missing", [*SI, "--out", "/nonexistent/dir/x.jsonl"],
         ["--out /nonexistent/dir/x.jsonl", "does not exist"]),
    Case("si-out-folder-missing-relative", [*SI, "--out", "no/such/x.jsonl"], ["--out no/such/x.jsonl", "no/such"]),
    Case("si-out-is-a-folder", [*SI, "--out", "outdir"], ["--out outdir", "is a folder"], files={"outdir/k": ""}),
    Case("si-out-unwritable", [*SI, "--out", "/sys/si.jsonl"], ["--out /sys/si.jsonl", "cannot write"]),
    Case("si-out-exists", [*SI, "--out", "si.jsonl"], ["--out si.jsonl", "--resume"],
         files={"si.jsonl": RECORD + "\n"}),
    Case("si-resume-not-utf8", [*SI, "--resume", "--out", "si.jsonl"], ["si.jsonl: line 2", "UTF-8"],
         files={"si.jsonl": RECORD.encode() + b"\n\x80abc\n"}),
    Case("si-resume-not-json", [*SI, "--resume", "--out", "si.jsonl"], ["si.jsonl: line 2", "not valid JSON"],
         files={"si.jsonl": RECORD + "\nnot json\n" + RECORD + "\n"}),
    Case("si-resume-no-instruction", [*SI, "--resume", "--out", "si.jsonl"], ["si.jsonl: line 1", "'instruction'"],
         files={"si.jsonl": json.dumps({"id": "machine_0", "request_idx": 0}) + "\n"}),
    Case("si-resume-bad-request-idx", [*SI, "--resume", "--out", "si.jsonl"], ["si.jsonl: line 1", "'request_idx'"],
         files={"si.jsonl": json.dumps({"instruction": "Do a thing now.", "request_idx": "7"}) + "\n"}),
    Case("si-resume-bad-instances", [*SI, "--resume", "--out", "si.jsonl"], ["si.jsonl: line 1", "instances[0]"],
         files={"si.jsonl": json.dumps({"instruction": "Do a thing now.", "instances": [{"input": 1}]}) + "\n"}),
    Case("si-resume-not-a-record-file", [*SI, "--resume", "--out", "si.jsonl"], ["si.jsonl: line 1"],
         files={"si.jsonl": "[1, 2, 3]"}),
    Case("si-resume-bad-state", [*SI, "--resume", "--out", "si.jsonl"], ["si.jsonl.state.json", "delete it"],
         files={"si.jsonl": RECORD + "\n", "si.jsonl.state.json": "{half"}),
    # ---- serve ---------------------------------------------------------------------------------------------------
    Case("serve-port-too-large", [*SERVE, "--port", "70000"], "--port: 70000 is not allowed"),
    Case("serve-port-negative", [*SERVE, "--port", "-1"], "--port: -1 is not allowed"),
    Case("serve-port-text", [*SERVE, "--port", "abc"], "--port: 'abc' is not allowed"),
    Case("serve-host-empty", [*SERVE, "--host", "", "--port", "0"], "--host"),
    Case("serve-host-not-here", [*SERVE, "--host", "192.0.2.1", "--port", "0"], ["--host 192.0.2.1", "cannot listen"]),
    Case("serve-batch-size-zero", [*SERVE, "--batch-size", "0", "--port", "0"], "--batch-size: 0 is not allowed"),
    Case("serve-threads-text", [*SERVE, "--threads", "many", "--port", "0"], "--threads: 'many' is not allowed"),
    Case("serve-max-tokens-zero", [*SERVE, "--max-tokens", "0", "--port", "0"], "--max-tokens: 0 is not allowed"),
    Case("serve-max-body-bytes-tiny", [*SERVE, "--max-body-bytes", "10", "--port", "0"], "--max-body-bytes: 10"),
    Case("serve-model-missing", [*SERVE, "--model", "{tmp}/no-such-model", "--port", "0"],
         ["--model", "no-such-model"]),
]


def test_table_is_large_and_ids_unique():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WB_TEST_NO_SUCH_KEY", raising=False)
    if "/sys/" in " ".join(case.argv) and not os.path.isdir("/sys"):
        pytest.skip("needs a read-only /sys (Linux)")
    run_case(case, tmp_path, monkeypatch, capsys)


# ---- checks that do not fit a row ----------------------------------------------------------------------------------


def test_refused_resume_leaves_the_file_as_it_was(tmp_path, monkeypatch, capsys):
    """A file that is not ours is never 'repaired': the torn-line cut only applies to a torn record."""
    for content in (b"[1, 2, 3]", RECORD.encode() + b"\n\x80abc", RECORD.encode() + b"\nnot json\n" + b'{"id": "m'):
        case = Case("resume-untouched", [*SI, "--resume", "--out", "si.jsonl"], "si.jsonl: line",
                    files={"si.jsonl": content})
        run_case(case, tmp_path, monkeypatch, capsys)
        assert (tmp_path / "si.jsonl").read_bytes() == content


def test_refused_mix_writes_nothing(tmp_path, monkeypatch, capsys):
    case = Case("mix-nothing-written", [*MIX, "--cap", "-5", "--out", "fresh"], "--cap")
    run_case(case, tmp_path, monkeypatch, capsys)
    assert not (tmp_path / "fresh").exists()


def test_refused_self_instruct_writes_nothing(tmp_path, monkeypatch, capsys):
    case = Case("si-nothing-written", [*SI, "--threshold", "5", "--out", "si.jsonl"], "--threshold")
    run_case(case, tmp_path, monkeypatch, capsys)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("mlflow")) == []


def test_serve_port_in_use(tmp_path, monkeypatch, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        case = Case("serve-port-in-use", [*SERVE, "--port", str(port)], [f"--port {port}", "cannot listen"])
        run_case(case, tmp_path, monkeypatch, capsys)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_self_instruct_read_only_folder(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        case = Case("si-out-read-only", [*SI, "--out", str(folder / "x.jsonl")], ["--out", "cannot write"])
        run_case(case, tmp_path, monkeypatch, capsys)
    finally:
        folder.chmod(0o755)
