"""Seed-file errors, filters and parsers, resume without duplicates, and the HTTP backend against a real server."""

import json
import os
import threading
from pathlib import Path

import pytest

from workbench.errors import ConfigError, WorkbenchError
from workbench.instruct import si_prompts
from workbench.instruct.backends import Decoding, HTTPBackend, LocalBackend
from workbench.instruct.filters import (SELF_INSTRUCT_BLACKLIST, blacklist_pattern, filter_instances,
                                        instruction_reject_reason, parse_alpaca, parse_classification_instances,
                                        parse_generation_instances, parse_instruction_list)
from workbench.instruct.seeds import DEFAULT_SEEDS, Instance, load_seed_tasks
from workbench.instruct.self_instruct import Candidate, Generator, SelfInstructConfig, read_records

# -- seed set ----------------------------------------------------------------------------------------------


def test_project_seed_set():
    seeds = load_seed_tasks()
    assert len(seeds) >= 100
    assert len({s.instruction for s in seeds}) == len(seeds)
    assert 20 <= sum(s.is_classification for s in seeds) <= 60
    assert any(not s.instances[0].input for s in seeds)


@pytest.mark.parametrize("line, message", [
    ('{"id": "a", "name": "n", "instances": [], "is_classification": false}', "missing field 'instruction'"),
    ('{"id": "a", "name": "n", "instruction": "Do it.", "instances": [{"input": "", "output": "x"}], '
     '"is_classification": "no"}', "field 'is_classification' must be bool"),
    ('{"id": "a", "name": "n", "instruction": "Do it.", "instances": [{"input": 3, "output": "x"}], '
     '"is_classification": false}', "instances[0].input"),
    ("this is not json", "not valid JSON"),
])
def test_malformed_seed_file_names_file_and_line(tmp_path, line, message):
    good = DEFAULT_SEEDS.read_text().splitlines()[:2]
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(good + [line]) + "\n")
    with pytest.raises(ConfigError) as err:
        load_seed_tasks(path)
    assert f"{path}: line 3" in str(err.value) and message in str(err.value)


# -- filters and parsers -------------------------------------------------------------------------------------


def test_instruction_filters_in_order():
    bl = blacklist_pattern(SELF_INSTRUCT_BLACKLIST)
    assert instruction_reject_reason("", bl) == "empty"
    assert instruction_reject_reason("Do it now", bl) == "length"
    assert instruction_reject_reason("Describe the image in one sentence.", bl) == "blacklist"
    assert instruction_reject_reason("Describe the imagery of the poem.", bl) is None  # whole words only
    assert instruction_reject_reason("Write a program that sorts numbers.", bl) == "write_a_program"
    assert instruction_reject_reason("- list three colours please", bl) == "punctuation"
    assert instruction_reject_reason("Écrivez trois phrases sur la mer.", bl) == "non_ascii"


def test_parsers():
    assert parse_instruction_list(" Give two tips.\n10. Name a river in  Spain.\n11. ", "stop") == [
        "Give two tips.", "Name a river in spain.", ""]  # str.capitalize(), as the reference
    assert parse_instruction_list(" Give two tips.", "length") == []
    clf = parse_classification_instances("Class label: yes\nNumber: 9\nClass label: no\nNumber: 4")
    assert clf == [Instance("Number: 9", "yes"), Instance("Number: 4", "no")]
    gen = parse_generation_instances("Example 1\nPet: a cat\nOutput: Tom\nExample 2\nPet: a dog\nOutput: Rex")
    assert gen == [Instance("Pet: a cat", "Tom"), Instance("Pet: a dog", "Rex")]
    assert parse_generation_instances("Output: Sleep more.") == [Instance("", "Sleep more.")]
    alp = parse_alpaca(" Name a fruit.\n4. Input:\n<noinput>\n4. Output:\nApple\n###\n5. Instruction: Add 2 and 3."
                       "\n5. Input:\n\n5. Output:\n5", "stop", 4)
    assert alp == [("Name a fruit.", Instance("", "Apple")), ("Add 2 and 3.", Instance("", "5"))]


def test_instance_filters():
    import random

    rng = random.Random(0)
    kept, why = filter_instances([Instance("a", "a"), Instance("x", ""), Instance("q:", "b")], False, rng)
    assert kept == [] and why == "no_valid_instance"
    kept, why = filter_instances([Instance("same", "1"), Instance("same", "2")], False, rng)
    assert kept == [] and why == "conflicting_instances"
    many = [Instance(f"in {i}", f"out {i}") for i in range(8)] + [Instance("in 0", "out 0")]
    kept, why = filter_instances(many, True, rng)
    assert why is None and len(kept) == 5 and len(set(kept)) == 5
    assert si_prompts.instruction_prompt(["A b c:", "D e f"]).endswith("1. A b c\n2. D e f\n3.")


# -- resume --------------------------------------------------------------------------------------------------


class _NoCalls:
    name = "none"

    def complete(self, prompts, decoding):  # the resume bookkeeping needs no generation
        raise AssertionError("not expected to generate")


def _cand(gen, text, request_idx=0):
    doc = gen.index.add(text)
    return Candidate(text, doc, {}, 0.0, request_idx, instances=[Instance("", f"answer to {text}")])


def test_resume_rebuilds_pool_without_duplicates_and_cuts_a_torn_line(tmp_path):
    out = tmp_path / "si.jsonl"
    cfg = SelfInstructConfig(out=str(out), num=10, log_mlflow=False, progress=False)
    gen = Generator(cfg, _NoCalls())
    first = [_cand(gen, f"Describe the history of the town number {w}", 0) for w in ("one", "two", "three")]
    gen._append(gen._finish(first, 10))
    with open(out, "a") as f:
        f.write('{"instruction": "Half a rec')  # killed while writing
    with pytest.raises(WorkbenchError, match="--resume"):
        Generator(cfg, _NoCalls())  # never overwrite without --resume
    cfg.resume = True
    gen2 = Generator(cfg, _NoCalls())
    assert [r["instruction"] for r in gen2.records] == [c.instruction for c in first]
    assert out.read_text().endswith("}\n")  # the torn line is gone, the complete ones are kept
    assert not gen2.index.check("Describe the history of the town number two").novel
    assert gen2.state.request_idx >= 1
    more = [_cand(gen2, "Suggest a name for a new bakery downtown", 8)]
    gen2._append(gen2._finish(more, 10 - len(gen2.records)))
    recs = read_records(out)
    assert len(recs) == 4 and len({r["instruction"] for r in recs}) == 4
    assert [r["id"] for r in recs] == [f"machine_{i}" for i in range(4)]


def test_finish_retires_instructions_without_instances(tmp_path):
    cfg = SelfInstructConfig(out=str(tmp_path / "x.jsonl"), log_mlflow=False, progress=False)
    gen = Generator(cfg, _NoCalls())
    bad = _cand(gen, "Explain why the ocean looks blue on sunny days")
    bad.instances = [Instance("x", "x")]
    assert gen._finish([bad], 10) == []
    assert gen.index.check("Explain why the ocean looks blue on sunny days").novel
    assert gen.state.reasons["no_valid_instance"] == 1


# -- backends ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_backend():
    """A tiny random Llama with the SmolLM2 tokenizer: real generation code, no real weights (plumbing)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from workbench.models import pull

    os.environ.setdefault("WORKBENCH_CACHE", "/tmp/wbcache")
    try:
        folder = Path(pull("smollm2-135m"))
    except Exception as e:  # noqa: BLE001 - no cache and no network: nothing to test with
        pytest.skip(f"smollm2-135m tokenizer unavailable: {e}")
    tok = AutoTokenizer.from_pretrained(folder / "hf" if (folder / "hf").exists() else folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LocalBackend(LlamaForCausalLM(cfg), tok, name="tiny", batch_size=3, threads=1)


def test_local_backend_batches_and_reports_finish_reason(tiny_backend):
    prompts = ["Come up with a series of tasks:\n1.", "Hello", "A much longer prompt than the others, to pad."]
    outs = tiny_backend.complete(prompts, Decoding(max_tokens=6, temperature=0.0))
    assert len(outs) == 3 and all(o.finish_reason in ("stop", "length") for o in outs)
    again = tiny_backend.complete(prompts[:1], Decoding(max_tokens=6, temperature=0.0))
    assert again[0].text == outs[0].text  # left padding does not change a greedy continuation


def test_local_backend_reports_tokens_while_it_generates(tiny_backend):
    seen = []
    tiny_backend.progress_hook = lambda tokens, limit: seen.append((tokens, limit))
    try:
        tiny_backend.complete(["Hello there"], Decoding(max_tokens=5, temperature=0.0))
    finally:
        tiny_backend.progress_hook = None
    assert seen and seen[-1][1] == 5 and [t for t, _ in seen] == sorted(t for t, _ in seen)


def test_http_backend_against_a_real_server(tiny_backend):
    from workbench.instruct.server import make_server

    server = make_server(tiny_backend, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        http = HTTPBackend(f"http://127.0.0.1:{server.server_port}/v1", concurrency=2)
        assert http.model == "tiny"  # found through GET /v1/models
        prompts = ["Task: name a fruit\nOutput:", "1. Give two tips.\n2."]
        dec = Decoding(max_tokens=5, temperature=0.0)
        assert [c.text for c in http.complete(prompts, dec)] == [c.text for c in tiny_backend.complete(prompts, dec)]
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_endpoint_names_the_url():
    with pytest.raises(WorkbenchError, match=r"cannot reach http://127\.0\.0\.1:9/v1/models"):
        HTTPBackend("http://127.0.0.1:9/v1", retries=0)


def test_unreachable_endpoint_loses_nothing(tmp_path):
    out = tmp_path / "si.jsonl"
    out.write_text(json.dumps({"instruction": "Name three rivers in Europe please", "request_idx": 0}) + "\n")
    before = out.read_bytes()
    cfg = SelfInstructConfig(out=str(out), num=5, resume=True, log_mlflow=False, progress=False)
    backend = HTTPBackend.__new__(HTTPBackend)  # skip the /models probe: fail on the first generation call
    backend.api_base, backend.timeout, backend.retries, backend.concurrency = "http://127.0.0.1:9/v1", 2, 0, 1
    backend._headers, backend.model, backend.name = {}, "m", "m"
    with pytest.raises(WorkbenchError, match="cannot reach"):
        Generator(cfg, backend).run()
    assert out.read_bytes() == before


@pytest.mark.slow
def test_self_instruct_with_the_offline_model_resumes(tmp_path):
    """Real model: a short run, interrupted by a second, larger target (resume), with an independent check."""
    from rouge_score import rouge_scorer

    from workbench.instruct.self_instruct import generate

    backend = LocalBackend.load("smollm2-135m")
    out = tmp_path / "si.jsonl"
    generate(SelfInstructConfig(out=str(out), num=3, log_mlflow=False, progress=False), backend)
    generate(SelfInstructConfig(out=str(out), num=6, resume=True, log_mlflow=False, progress=False), backend)
    recs = read_records(out)
    texts = [r["instruction"] for r in recs]
    assert len(recs) == 6 and len(set(texts)) == 6 and all(r["instances"] for r in recs)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = [s.instruction for s in load_seed_tasks()] + texts
    for i, t in enumerate(texts):
        others = pool[: len(pool) - len(texts) + i]
        assert max(scorer.score(t, o)["rougeL"].fmeasure for o in others) <= 0.7
