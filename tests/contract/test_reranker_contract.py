"""The CrossEncoder reranker's loading code, tested on a tiny model the test builds itself
(no cross-encoder with weights ships on PyPI)."""

from __future__ import annotations

import pytest

from assistant.core.settings import RerankerSettings
from knowledge_base.rerankers import Reranker, create_reranker


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    from transformers import (  # noqa: PLC0415 - with torch ~5 s at import; only this fixture needs it
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
    )

    directory = tmp_path_factory.mktemp("tiny-ce")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *list("低保养老金医失业登记法律援助"), "legal", "aid"]
    (directory / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"))
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_cross_encoder_loads_offline_and_scores(tiny_cross_encoder):
    reranker = create_reranker(RerankerSettings(name="cross_encoder", model_path=str(tiny_cross_encoder)))
    assert isinstance(reranker, Reranker)
    scores = reranker.score("低保", ["低保申请", "法律援助", "养老金"])
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)
    assert reranker.score("低保", []) == []


def test_reranker_is_off_by_default():
    assert create_reranker(RerankerSettings()) is None


def test_bad_reranker_configuration_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        create_reranker(RerankerSettings(name="cross_encoder", model_path=str(tmp_path / "nope")))
    with pytest.raises(ValueError, match="unknown reranker"):
        create_reranker(RerankerSettings(name="magic"))
