"""The Hugging Face model card (README.md) of a trained M2SA model: `huggingface_hub` card metadata with its
model-index (eval results), then prose rendered from the Jinja template `model_card_template.md`."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from dataset_script.schema import LABEL_NAMES, M2SA_CITATION
from modeling_m2sa.configuration_m2sa import FUSION_CHOICES

from .evaluation import OVERALL, format_metric, metrics_table

TAGS = ["m2sa", "sentiment-analysis", "multimodal", "twitter", "custom_code"]
TASK_TYPE = "text-classification"  # the closest Hub task: the output is one of three labels
TASK_NAMES = {True: "Multimodal (text + image) sentiment analysis", False: "Sentiment analysis (text)"}
SYNTHETIC_DEMO_TAG = "m2sa-synthetic-demo"
"""Tag of a model trained on the embedded synthetic demo set, whose answers are not real sentiment; the Space reads
it to say so on its page."""
MODEL_CARD_TEMPLATE = Path(__file__).with_name("model_card_template.md")
"""The card's prose and layout; `render_model_card` fills it with the metadata, tables and model details."""


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
    if fusion_type not in FUSION_CHOICES:
        raise ValueError(f"fusion_type must be one of {FUSION_CHOICES}, got {fusion_type!r}.")
    multimodal = bool(vision_tower)
    metadata = card_data(model_name, dataset, languages, results, base_model, multimodal, synthetic_demo)
    card = ModelCard.from_template(
        metadata,
        template_path=MODEL_CARD_TEMPLATE,
        model_name=model_name,
        text_tower=text_tower,
        vision_tower=vision_tower,
        multimodal=multimodal,
        fusion_type=fusion_type,
        lora=lora,
        label_names=list(label_names),
        synthetic_demo=synthetic_demo,
        dataset=dataset_identifier(dataset),
        dataset_on_hub=_is_hub_dataset_id(dataset),
        languages=list(languages),
        hyperparameters=[(_table_cell(name), _table_cell(value)) for name, value in training_args.items()],
        overall_macro_f1={split: format_metric(result[OVERALL]["macro_f1"]) for split, result in results.items()},
        several_runs=any(result[OVERALL]["num_runs"] > 1 for result in results.values()),
        macro_f1_table=metrics_table(results, metric="macro_f1") if results else None,
        accuracy_table=metrics_table(results, metric="accuracy") if results else None,
        citation=M2SA_CITATION,
    )
    return f"{card.content}\n"  # Jinja drops the template's final newline
