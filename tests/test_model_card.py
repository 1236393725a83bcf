"""The model card: YAML metadata the Hub parses (model-index included) and the sections of its body."""

import configparser
import inspect
import re

import pytest
import yaml
from huggingface_hub import ModelCard
from PIL import Image

from conftest import REPO_ROOT, run_without_package
from m2sa_training.evaluation import model_card
from m2sa_training.evaluation.metrics import aggregate_runs, compute_metrics
from m2sa_training.evaluation.model_card import MODEL_CARD_TEMPLATE, render_model_card
from modeling_m2sa.labels_m2sa import SYNTHETIC_DEMO_TAG


LABELS = [0, 1, 2, 2, 1, 0]
LANGUAGES = ["en", "en", "de", "de", "es", "es"]


def _card(**overrides):
    validation = aggregate_runs([compute_metrics(LABELS, [0, 1, 2, 2, 1, 0], LANGUAGES)])
    test = aggregate_runs([compute_metrics(LABELS, [0, 1, 1, 2, 0, 0], LANGUAGES)])
    arguments = {
        "model_name": "someone/m2sa-xlmr-clip",
        "text_tower": "cardiffnlp/twitter-xlm-roberta-base-sentiment-multilingual",
        "vision_tower": "openai/clip-vit-base-patch32",
        "dataset": "someone/m2sa-tweets",
        "languages": ["de", "en", "es"],
        "results": {"validation": validation, "test": test},
        "training_args": {"learning_rate": 2e-5, "num_epochs": 3, "seeds": "1|2"},
    }
    arguments.update(overrides)
    return render_model_card(**arguments)


def _front_matter(card):
    assert card.startswith("---\n")
    header, _, body = card[len("---\n") :].partition("\n---\n")
    return yaml.safe_load(header), body


def test_front_matter_has_the_hub_metadata():
    card = _card()
    metadata, _ = _front_matter(card)
    assert "&id" not in card  # no YAML anchors from shared dicts
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "text-classification"
    assert metadata["license"] == "apache-2.0"
    assert metadata["tags"] == ["m2sa", "sentiment-analysis", "multimodal", "twitter", "custom_code"]
    assert metadata["language"] == ["de", "en", "es"]
    assert metadata["datasets"] == ["someone/m2sa-tweets"]
    # both towers, as the Hub links a fine-tune to what it was fine-tuned from
    assert metadata["base_model"] == ["cardiffnlp/twitter-xlm-roberta-base-sentiment-multilingual",
                                      "openai/clip-vit-base-patch32"]
    assert metadata["base_model_relation"] == "finetune"
    assert metadata["metrics"] == ["f1", "accuracy"]


def test_model_index_lists_macro_f1_per_language_and_accuracy_per_split():
    metadata, _ = _front_matter(_card())
    (entry,) = metadata["model-index"]
    assert entry["name"] == "someone/m2sa-xlmr-clip"
    validation, test = entry["results"]
    assert validation["task"] == {"type": "text-classification",
                                  "name": "Multimodal (text + image) sentiment analysis"}
    dataset = {"name": "someone/m2sa-tweets", "type": "someone/m2sa-tweets", "split": "validation"}
    assert validation["dataset"] == dataset
    assert test["dataset"]["split"] == "test"
    metrics = {metric["name"]: metric for metric in test["metrics"]}
    assert list(metrics) == [
        "macro-F1 (overall)",
        "macro-F1 (de)",
        "macro-F1 (en)",
        "macro-F1 (es)",
        "accuracy (overall)",
    ]
    # en: both tweets right, but positive is absent from en and counts as F1 0 -> macro-F1 2/3.
    assert metrics["macro-F1 (en)"]["type"] == "f1" and metrics["macro-F1 (en)"]["value"] == 0.6667
    # es: true [neutral, negative], predicted [negative, negative] -> F1 negative 2/3, others 0.
    assert metrics["macro-F1 (es)"]["value"] == pytest.approx((2 / 3) / 3, abs=1e-4)
    assert metrics["accuracy (overall)"] == {"type": "accuracy", "name": "accuracy (overall)", "value": 0.6667}


def test_huggingface_hub_parses_the_card_and_its_eval_results():
    data = ModelCard(_card()).data
    assert data.to_dict()["library_name"] == "transformers"
    assert data.base_model == ["cardiffnlp/twitter-xlm-roberta-base-sentiment-multilingual",
                               "openai/clip-vit-base-patch32"]
    assert data.to_dict()["base_model_relation"] == "finetune" and data.metrics == ["f1", "accuracy"]
    assert data.datasets == ["someone/m2sa-tweets"]
    assert data.model_name == "someone/m2sa-xlmr-clip"
    assert len(data.eval_results) == 2 * 5
    test_en = next(
        result
        for result in data.eval_results
        if result.dataset_split == "test" and result.metric_name == "macro-F1 (en)"
    )
    assert (test_en.task_type, test_en.dataset_type, test_en.metric_type, test_en.metric_value) == (
        "text-classification",
        "someone/m2sa-tweets",
        "f1",
        0.6667,
    )


def test_aggregated_results_give_means_in_the_metadata_and_spread_in_the_body():
    first = compute_metrics(LABELS, LABELS, LANGUAGES)
    second = compute_metrics(LABELS, [0, 1, 1, 2, 0, 0], LANGUAGES)
    card = _card(results={"test": aggregate_runs([first, second])})
    metadata, body = _front_matter(card)
    metrics = {metric["name"]: metric["value"] for metric in metadata["model-index"][0]["results"][0]["metrics"]}
    assert metrics["accuracy (overall)"] == pytest.approx((1 + 4 / 6) / 2, abs=1e-4)
    assert "| en | 0.667 ± 0.000 |" in body
    assert "mean ± sample standard deviation" in body
    assert len(ModelCard(card).data.eval_results) == 5


CARD_HEADINGS = [
    "## How to use",
    "## Training data",
    "## Training hyper-parameters",
    "## Evaluation results",
    "## Intended use",
    "## Limitations",
    "## Citation",
]


def test_body_has_usage_data_hyperparameters_results_and_citation():
    _, body = _front_matter(_card())
    for heading in CARD_HEADINGS:
        assert heading in body
    for auto_class in ("AutoModelForSequenceClassification", "AutoProcessor"):
        assert f'{auto_class}.from_pretrained("someone/m2sa-xlmr-clip", trust_remote_code=True)' in body
    assert "modeling_m2sa" not in body  # the usage needs only transformers
    # one answer per tweet: the card offers the model's own pipeline only, and says why
    assert 'pipeline(model="someone/m2sa-xlmr-clip", trust_remote_code=True)' in body
    assert 'pipeline("text-classification"' not in body.replace('`pipeline("text-classification", ...)`', "")
    assert "the same tweet could get another label or score" in " ".join(body.split())
    assert body.index("from transformers import pipeline") < body.index("AutoModelForSequenceClassification")
    assert "concatenated" in body and '"no image" embedding' in body
    assert "| learning_rate | 2e-05 |" in body and "| seeds | 1\\|2 |" in body
    assert "| language (macro-F1) | validation | test |" in body
    assert "| en | 0.667 | 0.667 |" in body
    assert "machine-translated" in body.lower()
    assert "@inproceedings{thakkar-etal-2024-m2sa" in body and "LREC-COLING 2024" in body


def test_local_dataset_path_and_text_only_model(tmp_path):
    local_dataset = tmp_path / "data"
    local_dataset.mkdir()
    local_tower = tmp_path / "text-tower"
    local_tower.mkdir()
    card = _card(dataset=str(local_dataset), text_tower=str(local_tower), vision_tower=None)
    metadata, body = _front_matter(card)
    # a local path is no Hub id: neither is listed
    assert "datasets" not in metadata and "base_model" not in metadata and "base_model_relation" not in metadata
    result = metadata["model-index"][0]["results"][0]
    assert result["dataset"]["type"] == "data" and result["dataset"]["name"] == "data"  # never the local path
    assert str(tmp_path) not in card
    assert result["task"]["name"] == "Sentiment analysis (text)"  # a text-only model is not multimodal
    assert "text-only" in body and "images=None" in body and "image encoder" not in body
    ModelCard(card)


def test_card_without_results_has_no_model_index():
    metadata, body = _front_matter(_card(results={}, training_args={}))
    assert "model-index" not in metadata
    assert "No evaluation results" in body and "Not recorded." in body


def test_synthetic_demo_model_is_tagged_and_warned_about():
    metadata, body = _front_matter(_card(synthetic_demo=True))
    assert SYNTHETIC_DEMO_TAG in metadata["tags"]
    assert body.index("not real sentiment") < body.index("## How to use")
    ordinary_metadata, ordinary_body = _front_matter(_card())
    assert SYNTHETIC_DEMO_TAG not in ordinary_metadata["tags"] and "not real sentiment" not in ordinary_body


@pytest.mark.parametrize("multimodal", [True, False], ids=["multimodal", "text-only"])
def test_usage_snippets_run_verbatim_without_the_package(tiny_towers, saved_tiny_model_dir, tmp_path, multimodal):
    """Every Python block of "How to use", run as written (the model id replaced by a saved model's directory)."""
    from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor

    model_dir = saved_tiny_model_dir
    if not multimodal:
        model_dir = tmp_path / "text-only-model"
        M2SAForSequenceClassification.from_towers(tiny_towers["bert"]).save_pretrained(model_dir)
        M2SAProcessor.from_towers(tiny_towers["bert"]).save_pretrained(model_dir)
    card = _card(model_name=str(model_dir), vision_tower="clip" if multimodal else None)
    usage = card[card.index("## How to use") : card.index("## Training data")]
    blocks = re.findall(r"```python\n(.*?)```", usage, flags=re.DOTALL)
    assert len(blocks) == 2
    Image.new("RGB", (64, 48), "orange").save(tmp_path / "beach.jpg")
    script = "\n".join(blocks) + "\nprint(repr(classify('Qué día tan bonito')))\n"
    result = run_without_package(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (answer,) = eval(result.stdout.strip().splitlines()[-1])
    assert answer["label"] in {"negative", "neutral", "positive"} and 0 < answer["score"] <= 1


def test_card_names_the_fusion_type_and_the_lora_settings():
    lora = {"r": 8, "alpha": 16, "dropout": 0.05, "towers": "text", "target_modules": "all-linear"}
    _, gated = _front_matter(_card(fusion_type="gated", lora=lora))
    assert 'fusion_type="gated"' in gated and "Gated Multimodal Unit" in gated
    assert "LoRA (r=8, alpha=16, dropout 0.05, target modules all-linear)" in gated and "without `peft`" in gated
    _, late = _front_matter(_card(fusion_type="late"))
    assert 'fusion_type="late"' in late and "takes the text layer's logits alone" in late and "LoRA" not in late
    _, paper = _front_matter(_card())
    assert 'fusion_type="concat"' in paper and "concatenated" in paper


def test_the_template_file_renders_the_card_and_holds_its_prose(monkeypatch, tmp_path):
    template = MODEL_CARD_TEMPLATE.read_text(encoding="utf-8")
    module_source = inspect.getsource(model_card)
    for prose in ("## How to use", "## Limitations", "concatenated", "Demo model: its answers", "without `peft`"):
        assert prose in template and prose not in module_source
    edited = tmp_path / "card_template.md"
    edited.write_text(template.replace("## Citation", "## Only in the edited template\n\n## Citation"))
    monkeypatch.setattr(model_card, "MODEL_CARD_TEMPLATE", edited)
    card = _card()
    assert "\n## Only in the edited template\n\n## Citation\n" in card
    data = ModelCard(card).data  # the metadata still parses back, model-index included
    assert data.model_name == "someone/m2sa-xlmr-clip" and len(data.eval_results) == 2 * 5
    assert {result.dataset_split for result in data.eval_results} == {"validation", "test"}


@pytest.mark.parametrize(
    "overrides",
    [{}, {"synthetic_demo": True, "fusion_type": "late"}, {"vision_tower": None, "results": {}, "training_args": {}}],
    ids=["multimodal", "demo-late", "text-only-empty"],
)
def test_rendered_card_has_no_template_leftovers_and_tidy_whitespace(overrides):
    card = _card(**overrides)
    assert "{{" not in card and "{%" not in card and "%}" not in card
    assert card.endswith("```\n") and not card.endswith("\n\n")
    assert "\n\n\n" not in card and " \n" not in card
    headings = [line for line in card.splitlines() if line.startswith("## ")]
    assert headings == CARD_HEADINGS


def test_card_sentences_follow_the_model():
    lora = {"r": 4, "alpha": 8, "dropout": 0.1, "towers": "text and vision", "target_modules": "q,v"}
    _, body = _front_matter(_card(label_names=("bad", "meh", "good"), fusion_type="cross_attention", lora=lora))
    assert "classifies tweets as **bad**, **meh**, **good** from their text + image." in body
    assert "`openai/clip-vit-base-patch32`" in body and 'fusion_type="cross_attention"' in body
    assert "The text and vision tower(s) were fine-tuned with LoRA (r=4, alpha=8, dropout 0.1, target modules q,v);" in (
        body
    )
    assert "Trained on [`someone/m2sa-tweets`](https://huggingface.co/datasets/someone/m2sa-tweets)" in body
    assert "tweets in these languages: `de`, `en`, `es`." in body
    _, text_only = _front_matter(_card(vision_tower=None, languages=[], lora=lora))
    assert "from their text." in text_only and "only (a text-only M2SA model)" in text_only
    assert "tweets in these languages: not recorded." in text_only
    assert "with an optional image" not in text_only and "**Images**: this model reads the text only" in text_only


def test_unknown_fusion_type_is_refused():
    with pytest.raises(ValueError, match="fusion_type must be one of"):
        _card(fusion_type="sum")


def test_template_and_license_ship_with_the_package():
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    template_package = ".".join(MODEL_CARD_TEMPLATE.parent.relative_to(REPO_ROOT).parts)
    assert MODEL_CARD_TEMPLATE.name in setup["options.package_data"][template_package].split()
    assert "m2sa_training.*" in setup["options.packages.find"]["include"].split()  # the subpackages are installed
    assert setup["metadata"]["license_files"].split() == ["LICENSE"]
    license_text = (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    assert "END OF TERMS AND CONDITIONS" in license_text and len(license_text.splitlines()) == 202
    metadata, _ = _front_matter(_card())  # the card states the licence the package ships
    assert metadata["license"] == setup["metadata"]["license"].lower() == "apache-2.0"
