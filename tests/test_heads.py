"""The verbalizer head reads label words without full-vocabulary logits and must give the same scores."""

import pytest
import torch

from workbench.models import ModelKind
from workbench.prompts import PromptEncoder, Verbalizer, collate, parse_template
from workbench.prompts.verbalizer import label_word_ids
from workbench.data import Example
from workbench.training import PromptClassifier, VerbalizerHead, label_word_logits

SENTENCES = ["it was a great movie", "the plot was dull and the actors bad", "fun", "not very good , but funny"]


def _batch(backbone, kind):
    enc = PromptEncoder(parse_template('{"placeholder":"text_a"} It was {"mask"}.'), backbone.tokenizer, kind,
                        ("sentence",), 64)
    return collate([enc.encode(Example(str(i), {"sentence": s}, i % 2)) for i, s in enumerate(SENTENCES)],
                   backbone.tokenizer.pad_token_id)


@pytest.mark.parametrize("fixture, kind", [("tiny_mlm", ModelKind.MASKED), ("tiny_causal", ModelKind.CAUSAL)])
def test_label_word_scores_equal_full_logits(request, fixture, kind):
    bb = request.getfixturevalue(fixture)
    words = label_word_ids(Verbalizer.from_lines(["bad, terrible", "great, good"]), bb.tokenizer)
    batch = _batch(bb, kind)
    fast = PromptClassifier(bb.model, VerbalizerHead(words.token_ids, words.class_matrix))
    slow = PromptClassifier(bb.model, VerbalizerHead(words.token_ids, words.class_matrix, full_vocab=True))
    with torch.no_grad():
        a, b = fast(batch), slow(batch)
    assert a.shape == (len(SENTENCES), 2)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # and the full-vocabulary path really is the model's ordinary output
    with torch.no_grad():
        logits = bb.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    rows = logits[torch.arange(len(SENTENCES)), batch["readout"]][:, words.token_ids]
    torch.testing.assert_close(b, rows @ words.class_matrix.T, rtol=1e-5, atol=1e-5)


def test_restricted_output_is_restored_and_gradients_flow(tiny_causal):
    bb = tiny_causal
    ids = torch.tensor([3, 5])
    x = torch.tensor([[1, 2, 3]])
    with label_word_logits(bb.model, ids):
        out = bb.model(input_ids=x).logits
    assert out.shape[-1] == 2
    assert bb.model(input_ids=x).logits.shape[-1] == bb.model.config.vocab_size
    emb = bb.model.get_input_embeddings().weight
    emb.grad = None
    with label_word_logits(bb.model, ids):
        bb.model(input_ids=x).logits.sum().backward()
    assert emb.grad is not None and emb.grad[ids].abs().sum() > 0  # tied output rows receive gradient
    emb.grad = None
