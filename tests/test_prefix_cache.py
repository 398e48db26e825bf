"""The shared-prefix cache of the local generator: prompts that start with the same demonstrations read them
once, and greedy outputs equal those of plain generation from the full prompts."""

from __future__ import annotations

import pytest
import torch

from workbench.instruct.backends import MIN_SHARED_PREFIX, Decoding, LocalBackend

DEMOS = "".join(f"Q: there are {i} red apples and {i + 2} green ones in basket {i}.\nA: The answer is {2 * i + 2}.\n\n"
                for i in range(4))
QUESTIONS = ["Q: how many apples?\nA:", "Q: two baskets hold seven apples each; how many in all?\nA:",
             "Q: one?\nA:", "Q: a farmer sells nine apples and keeps the rest of twenty; how many does she keep?\nA:",
             "Q: and the green ones in basket three?\nA:"]
GREEDY = Decoding(max_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def tiny_causal():
    """A tiny Llama whose random weights are large enough that greedy outputs depend on the question (the shared
    fixture's, at the usual init, answers every prompt with the same token)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from conftest import _byte_bpe_tokenizer
    from workbench.models import Backbone

    tok = _byte_bpe_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=1024,
                      initializer_range=0.5, pad_token_id=tok.pad_token_id)
    return Backbone.from_model(LlamaForCausalLM(cfg).eval(), tok, name="tiny-llama")


def outputs(model, tok, prompts, prefix_cache: bool, batch_size: int = 2):
    backend = LocalBackend(model, tok, batch_size=batch_size, prefix_cache=prefix_cache)
    return [c.text for c in backend.complete(prompts, GREEDY)], backend


def test_shared_demonstrations_are_read_once_and_outputs_are_unchanged(tiny_causal):
    prompts = [DEMOS + q for q in QUESTIONS]
    plain, _ = outputs(tiny_causal.model, tiny_causal.tokenizer, prompts, prefix_cache=False)
    cached, backend = outputs(tiny_causal.model, tiny_causal.tokenizer, prompts, prefix_cache=True)
    shared = backend._shared_prefix(prompts)
    assert shared is not None and len(shared[0]) >= MIN_SHARED_PREFIX  # the cache was used
    assert cached == plain
    # and both equal generating from each full prompt alone, with no padding at all
    alone = [outputs(tiny_causal.model, tiny_causal.tokenizer, [p], prefix_cache=False)[0][0] for p in prompts]
    assert cached == alone
    assert len(set(cached)) > 1  # the questions matter: not one answer repeated from the shared part


def test_the_prefix_forward_runs_once_for_all_batches(tiny_causal):
    prompts = [DEMOS + q for q in QUESTIONS]
    backend = LocalBackend(tiny_causal.model, tiny_causal.tokenizer, batch_size=2)
    longest = []

    def record(module, args, kwargs):
        longest.append(kwargs["input_ids"].shape[1])

    hook = tiny_causal.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        backend.complete(prompts, Decoding(max_tokens=1, temperature=0.0))
    finally:
        hook.remove()
    prefix_len = len(backend._shared_prefix(prompts)[0])
    # one forward over the demonstrations, then 3 batches that each read only their questions
    assert sum(1 for n in longest if n >= prefix_len) == 1
    assert len(longest) == 4


def test_prompts_without_a_long_shared_start_are_generated_plainly(tiny_causal):
    backend = LocalBackend(tiny_causal.model, tiny_causal.tokenizer, batch_size=2)
    assert backend._shared_prefix(QUESTIONS) is None
    assert backend._shared_prefix([DEMOS + QUESTIONS[0]]) is None  # one prompt: nothing to share


def test_sampling_with_the_cache_keeps_the_seeded_draws(tiny_causal):
    prompts = [DEMOS + q for q in QUESTIONS[:2]]
    backend = LocalBackend(tiny_causal.model, tiny_causal.tokenizer, batch_size=2)
    d = Decoding(max_tokens=8, temperature=0.7, seed=3)
    assert [c.text for c in backend.complete(prompts, d)] == [c.text for c in backend.complete(prompts, d)]


@pytest.fixture(scope="module")
def tiny_sliding(tiny_gemma3):
    """A Gemma 3 shaped model whose sliding window (16) is far shorter than the prompts."""
    return tiny_gemma3.model, tiny_gemma3.tokenizer


def test_sliding_window_models_batch_only_questions_of_equal_length(tiny_sliding):
    model, tok = tiny_sliding
    prompts = [DEMOS + q for q in QUESTIONS] + [DEMOS + QUESTIONS[2]]
    backend = LocalBackend(model, tok, batch_size=4)
    prefix, rests = backend._shared_prefix(prompts)
    assert backend._sliding_window_bound(len(prefix) + max(map(len, rests)), GREEDY)
    cached, _ = outputs(model, tok, prompts, prefix_cache=True, batch_size=4)
    alone = [outputs(model, tok, [p], prefix_cache=False)[0][0] for p in prompts]
    assert cached == alone
    assert len(set(cached)) > 1


def test_rows_that_end_leave_the_batch_and_outputs_stay_those_of_generate(tiny_causal):
    model, tok = tiny_causal.model, tiny_causal.tokenizer
    prompts = [DEMOS + q for q in QUESTIONS]
    free, _ = outputs(model, tok, prompts, prefix_cache=False, batch_size=8)
    # a stop string that one row's greedy output holds early and some other row's does not
    early = next(t[:2] for t in free if t[:2].strip() and sum(t[:2] in u for u in free) < len(free))
    stop = Decoding(max_tokens=12, temperature=0.0, stop=(early,))
    plain = [c.text for c in LocalBackend(model, tok, batch_size=8, prefix_cache=False).complete(prompts, stop)]
    sizes = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: sizes.append(kw["input_ids"].shape[0]) and None,
                                           with_kwargs=True)
    try:
        cached = [c.text for c in LocalBackend(model, tok, batch_size=8).complete(prompts, stop)]
    finally:
        hook.remove()
    assert cached == plain
    assert sizes[0] == 1 and sizes[1] == len(prompts)  # the prefix once, then the whole batch
    assert min(sizes[1:]) < len(prompts)  # a row that ended left the batch
