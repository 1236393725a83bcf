"""The Hugging Face model card (README.md) of a trained M2SA model: `huggingface_hub` card metadata with its
model-index (eval results), then prose."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from dataset_script.schema import LABEL_NAMES, M2SA_CITATION

from .evaluation import OVERALL, format_metric, metrics_table

TAGS = ["m2sa", "sentiment-analysis", "multimodal", "twitter", "custom_code"]
TASK_TYPE = "text-classification"  # the closest Hub task: the output is one of three labels
TASK_NAMES = {True: "Multimodal (text + image) sentiment analysis", False: "Sentiment analysis (text)"}
SYNTHETIC_DEMO_TAG = "m2sa-synthetic-demo"
"""Tag of a model trained on the embedded synthetic demo set, whose answers are not real sentiment; the Space reads
it to say so on its page."""
SYNTHETIC_DEMO_WARNING = (
    "> **⚠️ Demo model: its answers are not real sentiment.** It was trained on M2SA's embedded synthetic demo set, "
    "made-up tweets whose labels follow planted cue words, so it has learned those cues and nothing about how real "
    "tweets feel. Train on real data (`python train.py --dataset ORG/NAME_OR_DIR ...`) for a model to use.\n\n"
)


FUSION_DESCRIPTIONS = {
    "concat": "The pooled text features and the pooled image features are concatenated (the paper's fusion, "
              "`fusion_type=\"concat\"`), then dropout and a linear layer give the three logits.",
    "gated": "The pooled text and image features are fused by a Gated Multimodal Unit (`fusion_type=\"gated\"`): "
             "each goes through a tanh projection to a common width and a sigmoid gate computed from both mixes them "
             "per dimension, so the model learns how far to trust each tweet's image; then dropout and a linear "
             "layer give the three logits.",
    "late": "Late fusion (`fusion_type=\"late\"`): a linear layer on the pooled text features and one on the pooled "
            "image features each give three logits, mixed with two learned weights.",
    "cross_attention": "Cross-attention fusion (`fusion_type=\"cross_attention\"`): the text encoder's token states "
                       "attend to the image encoder's patch states, are mean-pooled, then dropout and a linear layer "
                       "give the three logits.",
}
NO_IMAGE_DESCRIPTIONS = {
    "late": "A tweet without an image is never dropped: it takes the text layer's logits alone, so one batch may mix "
            "tweets with and without images.",
    None: "A tweet without an image is never dropped: the model puts a learned \"no image\" embedding in place of "
          "the image features, so one batch may mix tweets with and without images.",
}


def _lora_sentence(lora):
    if not lora:
        return ""
    return (
        f" The {lora['towers']} tower(s) were fine-tuned with LoRA (r={lora['r']}, alpha={lora['alpha']}, dropout "
        f"{lora['dropout']}, target modules {lora['target_modules']}); the adapters are merged into the weights, so "
        f"the model loads and runs without `peft`."
    )


def _is_hub_dataset_id(dataset):
    return "/" in dataset and not Path(dataset).exists()


def dataset_identifier(dataset):
    """How the card names the training data: its Hub id, else the directory's name (never a local path)."""
    return dataset if _is_hub_dataset_id(dataset) else Path(dataset).name


def _eval_results(dataset, results, multimodal):
    """One `EvalResult` per split and metric: macro-F1 overall and per language, then overall accuracy (means)."""
    dataset_id = dataset_identifier(dataset)
    common = dict(task_type=TASK_TYPE, task_name=TASK_NAMES[multimodal], dataset_type=dataset_id,
                  dataset_name=dataset_id)
    eval_results = []
    for split, result in results.items():
        for name, block in [(OVERALL, result[OVERALL]), *result["per_language"].items()]:
            eval_results.append(EvalResult(**common, dataset_split=split, metric_type="f1",
                                           metric_name=f"macro-F1 ({name})", metric_args={"average": "macro"},
                                           metric_value=round(block["macro_f1"]["mean"], 4)))
        eval_results.append(EvalResult(**common, dataset_split=split, metric_type="accuracy",
                                       metric_name=f"accuracy ({OVERALL})",
                                       metric_value=round(result[OVERALL]["accuracy"]["mean"], 4)))
    return eval_results


def card_data(model_name, dataset, languages, results, base_model, multimodal, synthetic_demo=False):
    """The card's YAML metadata as `huggingface_hub.ModelCardData` (its `model-index` built from eval results)."""
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=TASK_TYPE,
        license="apache-2.0",
        language=list(languages),
        tags=[*TAGS, SYNTHETIC_DEMO_TAG] if synthetic_demo else list(TAGS),
        datasets=[dataset] if _is_hub_dataset_id(dataset) else None,
        base_model=base_model,
        model_name=model_name if results else None,
        eval_results=_eval_results(dataset, results, multimodal) or None,
    )


def _table_cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")


def _hyperparameter_table(training_args):
    if not training_args:
        return "Not recorded."
    rows = [f"| {_table_cell(name)} | {_table_cell(value)} |" for name, value in training_args.items()]
    return "\n".join(["| hyper-parameter | value |", "|---|---|", *rows])


def _results_section(results):
    if not results:
        return "No evaluation results were recorded for this model."
    spread = ""
    if any(result[OVERALL]["num_runs"] > 1 for result in results.values()):
        spread = " Values are mean ± sample standard deviation over training runs with different seeds."
    overall = ", ".join(f"{split} {format_metric(result[OVERALL]['macro_f1'])}" for split, result in results.items())
    return (
        f"Macro-F1 averages the F1 of the three classes, each counting equally even when absent from a language's "
        f"test tweets.{spread} Overall macro-F1: {overall}.\n\n"
        f"### Macro-F1 per language\n\n{metrics_table(results, metric='macro_f1')}\n\n"
        f"### Accuracy per language\n\n{metrics_table(results, metric='accuracy')}"
    )


def render_model_card(
    *, model_name, text_tower, vision_tower, dataset, languages, results, training_args, base_model=None,
    label_names=LABEL_NAMES, synthetic_demo=False, fusion_type="concat", lora=None
):
    """The README.md of a trained M2SA model, for `push_to_hub` or a local checkpoint folder.

    Args:
        model_name: the model's Hub id (or name); used in the usage example and the model-index.
        text_tower: Hub id or path of the text encoder the model was built from.
        vision_tower: Hub id or path of the image encoder, or `None` for a text-only model.
        dataset: Hub id (listed under `datasets:`) or local path of the training data.
        languages: ISO codes of the training languages.
        results: split name -> `aggregate_runs` result; goes to the model-index (means) and to the per-language
            tables (mean ± std over several runs).
        training_args: hyper-parameter name -> value, shown as a table.
        base_model: Hub id of the checkpoint fine-tuned, listed as `base_model:` when given.
        label_names: the classes in id order (the training data's labels).
        synthetic_demo: the model was trained on the embedded synthetic demo set: the card (and a Space serving the
            model) warns that its answers are not real sentiment.
        fusion_type: the model's `config.fusion_type` (a text-only model has only "concat").
        lora: None for full fine-tuning, or {"r", "alpha", "dropout", "towers", "target_modules"} of the LoRA
            adapters merged into the towers.
    """
    if vision_tower:
        towers = (
            f"a text encoder (`{text_tower}`) and an image encoder (`{vision_tower}`). {FUSION_DESCRIPTIONS[fusion_type]} "
            f"{NO_IMAGE_DESCRIPTIONS.get(fusion_type, NO_IMAGE_DESCRIPTIONS[None])}{_lora_sentence(lora)}"
        )
        modality = "text + image"
        images_limitation = (
            "- **Missing images**: many tweets have no image (deleted media or none posted); the model then relies on "
            "the text\n  alone, and image-only tweets (empty text) depend entirely on the image encoder."
        )
    else:
        towers = (
            f"a text encoder (`{text_tower}`) only (a text-only M2SA model): the pooled text features go through "
            f"dropout and a linear layer that gives the three logits.{_lora_sentence(lora)}"
        )
        modality = "text"
        images_limitation = "- **Images**: this model reads the text only; images attached to tweets are ignored."
    language_list = ", ".join(f"`{code}`" for code in languages) or "not recorded"
    dataset_link = f"`{dataset_identifier(dataset)}`"
    if _is_hub_dataset_id(dataset):
        dataset_link = f"[`{dataset}`](https://huggingface.co/datasets/{dataset})"
    images_argument = '["beach.jpg", None]' if vision_tower else "None"
    several_tweets = '["Worst service ever", "Der Zug kommt um acht"]'
    single_image_example = ""
    if vision_tower:
        several_tweets = '[{"text": "Worst service ever"}, {"text": "", "image": "beach.jpg"}]'
        single_image_example = (
            'classify({"text": "look at this", "image": "beach.jpg"})  # image: a path, PIL image or bytes\n'
        )
    input_image = "with an optional image, " if vision_tower else ""
    metadata = card_data(model_name, dataset, languages, results, base_model, multimodal=bool(vision_tower),
                         synthetic_demo=synthetic_demo)
    demo_warning = SYNTHETIC_DEMO_WARNING if synthetic_demo else ""
    return f"""---
{metadata.to_yaml()}
---

# {model_name}

{demo_warning}M2SA classifies tweets as **{'**, **'.join(label_names)}** from their {modality}. It implements the model of
"M2SA: Multimodal and Multilingual Model for Sentiment Analysis of Tweets" (Thakkar, Hakimov, Tadić,
LREC-COLING 2024) and is built from {towers}

The Hub lists the model under `text-classification`, the closest pipeline tag: the input is a tweet's text
{input_image}and the output is one of three sentiment labels. The model is custom code, so load it with
`trust_remote_code=True`.

## How to use

With nothing but `transformers` (and Pillow) installed:

```python
from transformers import pipeline

classify = pipeline(model="{model_name}", trust_remote_code=True)
classify("Qué día tan bonito")
# [{{'label': 'positive', 'score': ..., 'image_used': False, 'image_error': None}}]
{single_image_example}# several tweets at once; top_k=None gives every label with its score
classify({several_tweets}, batch_size=32, top_k=None)
```

Tweets are sorted by length and batched with dynamic padding. `on_invalid_image="text_only"` classifies a tweet
whose image cannot be read from its text and says why in `image_error` (the default, `"raise"`, stops with the
tweet's index and the reason); `autocast_dtype="bf16"` runs under bfloat16 autocast.
`pipeline("text-classification", model="{model_name}", trust_remote_code=True)` also works for text alone.

Without the pipeline:

```python
from transformers import AutoModelForSequenceClassification, AutoProcessor

model = AutoModelForSequenceClassification.from_pretrained("{model_name}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{model_name}", trust_remote_code=True)
logits = model(**processor(text=["Qué día tan bonito", "Worst service ever"], images={images_argument})).logits
```

## Training data

Trained on {dataset_link}, tweets in these languages: {language_list}.

## Training hyper-parameters

{_hyperparameter_table(training_args)}

## Evaluation results

{_results_section(results)}

## Intended use

Sentiment of short social-media posts (tweets), with or without an attached image, in the languages above: for
research, aggregate analysis of public opinion and as a baseline for multimodal sentiment models. It is not meant
for decisions about individual people.

## Limitations

- **Domain**: trained on tweets; longer or more formal text (reviews, news) and other platforms may score worse.
- **Label noise**: the labels come from several public Twitter sentiment datasets annotated with different
  guidelines; some were labelled automatically.
- **Machine-translated sets**: part of the training data for some languages is machine-translated, so those
  languages' results may overstate quality on native tweets.
{images_limitation}
- **Bias**: the model inherits the biases of its pre-trained encoders and of the Twitter data (topics, dialects and
  demographics are unevenly represented); per-language scores vary, see the tables above.

## Citation

```bibtex
{M2SA_CITATION}
```
"""
