"""`pipe(tweet, explain=True)`: Integrated Gradients word attributions, image patch maps and modality shares."""

import sys

import pytest
from PIL import Image
from transformers import pipeline

from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

TWEETS = [
    "I love this so much, best day ever!",
    {"text": "Das ist schrecklich und langweilig.", "image": Image.effect_noise((64, 48), 60).convert("RGB")},
    {"text": "", "image": Image.new("RGB", (40, 30), "red")},
]


@pytest.fixture(scope="module")
def pipe(saved_tiny_model_dir):
    return pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True, backend="fp32")


@pytest.fixture(scope="module")
def explained(pipe):
    return pipe(TWEETS, explain=True)


def test_attributions_sum_to_the_logit_change_within_five_percent(explained):
    for result in explained:
        explanation = result["explanation"]
        total = explanation["text_attribution"] + explanation["image_attribution"]
        assert abs(total - explanation["logit_change"]) <= 0.05 * abs(explanation["logit_change"]), explanation
        assert total - explanation["logit_change"] == pytest.approx(explanation["convergence_delta"], abs=1e-5)


def test_word_pieces_merge_into_the_tweets_words_and_sum_to_the_text_total(explained):
    for tweet, result in zip(TWEETS, explained):
        text = tweet if isinstance(tweet, str) else tweet["text"]
        words = result["explanation"]["words"]
        assert [word for word, _ in words] == text.split()
        assert sum(value for _, value in words) == pytest.approx(result["explanation"]["text_attribution"], abs=1e-5)
    assert all(value != 0 for _, value in explained[0]["explanation"]["words"])


def test_modality_shares_and_the_image_map(explained, pipe):
    text_only, with_image, image_only = (result["explanation"] for result in explained)
    assert text_only["modality_shares"] == {"text": 1.0, "image": 0.0} and text_only["image_map"] is None
    assert text_only["image_attribution"] == 0.0
    vision = pipe.model.config.vision_config
    side = vision.image_size // vision.patch_size
    for explanation in (with_image, image_only):
        grid = explanation["image_map"]
        assert (len(grid), len(grid[0])) == (side, side)
        assert sum(map(sum, grid)) == pytest.approx(explanation["image_attribution"], rel=1e-5)
        shares = explanation["modality_shares"]
        assert shares["text"] + shares["image"] == pytest.approx(1.0) and 0 < shares["image"] <= 1
    assert image_only["words"] == [] and image_only["modality_shares"]["image"] == pytest.approx(1.0)


def test_explanations_cost_nothing_when_off_and_change_no_score(pipe, explained):
    plain = pipe(TWEETS)
    assert all("explanation" not in result for result in plain)
    assert [result["score"] for result in plain] == [result["score"] for result in explained]
    assert [result["label"] for result in plain] == [result["label"] for result in explained]
    ranked = pipe(TWEETS[0], explain=True, top_k=None)
    assert "explanation" in ranked[0] and all("explanation" not in entry for entry in ranked[1:])


def test_a_text_only_model_with_a_wordpiece_tokenizer(tiny_towers, tmp_path):
    model_dir = tmp_path / "text-only"
    M2SAForSequenceClassification.from_towers(tiny_towers["bert"]).save_pretrained(model_dir)
    M2SAProcessor.from_towers(tiny_towers["bert"]).save_pretrained(model_dir)
    text_pipe = pipeline(model=str(model_dir), trust_remote_code=True, backend="fp32")
    (result,) = text_pipe(["Ich liebe dieses Wetter, wunderbar!"], explain=True)
    explanation = result["explanation"]
    assert [word for word, _ in explanation["words"]] == ["Ich", "liebe", "dieses", "Wetter,", "wunderbar!"]
    assert explanation["modality_shares"]["text"] == 1.0
    assert abs(explanation["convergence_delta"]) <= 0.05 * abs(explanation["logit_change"])


def test_explanation_options_without_explain_and_without_captum_are_refused(pipe, monkeypatch):
    with pytest.raises(ValueError, match="pass explain=True with them"):
        pipe("hello", n_steps=8)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ValueError, match="pip install captum"):
        pipe("hello", explain=True)


@pytest.fixture(scope="module")
def demo_model(main_job_workdir):
    """The multimodal model the README's main job (`python train.py`) trained on the embedded demo set, and the demo
    test split."""
    import datasets

    test = datasets.load_dataset(str(main_job_workdir / ".cache" / "m2sa" / "demo-dataset"), "all", split="test")
    return main_job_workdir / "outputs" / "m2sa-demo", test.cast_column("image", datasets.Image(decode=False))


def test_the_planted_cues_get_the_attribution(demo_model):
    """The demo set plants one sentiment word (the text cue) and a dominant colour (the image cue): the explanation
    should find the word, and give tweets without one most of their attribution from the image."""
    from dataset_script.demo import LEXICON

    model_dir, test = demo_model
    pipe = pipeline(model=str(model_dir), trust_remote_code=True, backend="fp32")
    cue_words = {language: set(f"{positive} {negative}".split()) for language, (positive, negative, _, _) in
                 LEXICON.items()}
    rows = list(test.select(range(120)))
    results = pipe([{"text": row["text"], "image": row["image"] and row["image"]["bytes"]} for row in rows],
                   explain=True, batch_size=16)
    found, cued, image_led, uncued = 0, 0, 0, 0
    for row, result in zip(rows, results):
        words = result["explanation"]["words"]
        cues = [word for word, _ in words if word in cue_words[row["language"]]]
        if cues:
            cued += 1
            found += max(words, key=lambda pair: abs(pair[1]))[0] == cues[0]
        elif row["image"]:
            uncued += 1
            image_led += result["explanation"]["modality_shares"]["image"] > 0.5
    print(f"top word is the planted one in {found} of {cued}; image-led in {image_led} of {uncued} without one")
    assert cued >= 60 and uncued >= 20
    assert found / cued >= 0.8  # chance: about 1 word in 6
    assert image_led / uncued > 0.5


def test_a_prefixed_processor_explains_the_tweets_words_and_names_the_prefixs_share(tiny_towers, tmp_path):
    model_dir = tmp_path / "prefixed"
    M2SAForSequenceClassification.from_towers(tiny_towers["xlm-roberta"]).save_pretrained(model_dir)
    M2SAProcessor.from_towers(tiny_towers["xlm-roberta"], text_prefix="query: ").save_pretrained(model_dir)
    text_pipe = pipeline(model=str(model_dir), trust_remote_code=True, backend="fp32")
    (result,) = text_pipe(["I love this so much"], explain=True)
    explanation = result["explanation"]
    assert [word for word, _ in explanation["words"]] == ["I", "love", "this", "so", "much"]
    assert explanation["prefix_attribution"] != 0
    assert (sum(value for _, value in explanation["words"]) + explanation["prefix_attribution"]
            == pytest.approx(explanation["text_attribution"], abs=1e-5))
