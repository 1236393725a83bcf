"""The Hugging Face model card (README.md) of a trained M2SA model: `huggingface_hub` card metadata with its
model-index (eval results), then prose rendered from the Jinja template `model_card_template.md`."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from dataset_script.schema import LABEL_NAMES, M2SA_CITATION
from modeling_m2sa.backends_m2sa import AGREEMENT_FLOOR
from modeling_m2sa.configuration_m2sa import CLASSIFICATION, FUSION_CHOICES, REGRESSION
from modeling_m2sa.labels_m2sa import SYNTHETIC_DEMO_TAG
from modeling_m2sa.language_m2sa import spoken_language

from .calibration import calibration_markdown
from .metrics import METRIC_TITLES, OVERALL, REGRESSION_METRICS
from .reports import format_metric, metrics_table

TAGS = ["m2sa", "sentiment-analysis", "multimodal", "twitter", "custom_code"]
TASK_TYPE = "text-classification"  # the closest Hub task: the output is one of three labels (or one number)
TASK_NAMES = {True: "Multimodal (text + image) sentiment analysis", False: "Sentiment analysis (text)"}
REGRESSION_TASK_NAMES = {True: "Multimodal (text + image) sentiment regression", False: "Sentiment regression (text)"}
REGRESSION_METRIC_TYPES = {"mse": "mse", "mae": "mae", "pearson": "pearsonr", "spearman": "spearmanr"}
"""The Hub's metric ids of the regression metrics."""
MODEL_CARD_TEMPLATE = Path(__file__).with_name("model_card_template.md")
"""The card's prose and layout; `render_model_card` fills it with the metadata, tables and model details."""


def is_hub_id(name):
    """Whether a model or dataset is named by its Hub id ("org/name") rather than by a local path."""
    return "/" in name and not Path(name).exists()


def hub_name(name):
    """How the card names a model or dataset: its Hub id, else the directory's name (never a local path)."""
    return name if is_hub_id(name) else Path(name).name


def _regression_eval_results(results, common):
    """One `EvalResult` per split and metric: MSE overall and per language, then overall MAE, Pearson r and Spearman
    ρ (those defined; means)."""
    eval_results = []
    for split, result in results.items():
        for name, block in [(OVERALL, result[OVERALL]), *result["per_language"].items()]:
            eval_results.append(EvalResult(**common, dataset_split=split, metric_type="mse",
                                           metric_name=f"MSE ({name})", metric_value=round(block["mse"]["mean"], 4)))
        for metric in REGRESSION_METRICS[1:]:
            if result[OVERALL][metric] is not None:
                eval_results.append(EvalResult(**common, dataset_split=split,
                                               metric_type=REGRESSION_METRIC_TYPES[metric],
                                               metric_name=f"{METRIC_TITLES[metric]} ({OVERALL})",
                                               metric_value=round(result[OVERALL][metric]["mean"], 4)))
    return eval_results


def _eval_results(dataset, results, multimodal, problem_type=CLASSIFICATION):
    """One `EvalResult` per split and metric: macro-F1 overall and per language, then overall accuracy (means); for
    a regression model, `_regression_eval_results`."""
    dataset_id = hub_name(dataset)
    task_names = REGRESSION_TASK_NAMES if problem_type == REGRESSION else TASK_NAMES
    common = dict(task_type=TASK_TYPE, task_name=task_names[multimodal], dataset_type=dataset_id,
                  dataset_name=dataset_id)
    if problem_type == REGRESSION:
        return _regression_eval_results(results, common)
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


def card_data(model_name, dataset, languages, results, towers, multimodal, synthetic_demo=False,
              problem_type=CLASSIFICATION):
    """The card's YAML metadata as `huggingface_hub.ModelCardData` (its `model-index` built from eval results).

    `base_model` lists the `towers` named by Hub id (the checkpoints the model was fine-tuned from: the Hub links the
    model to them as a fine-tune); `metrics` the Hub ids of the metrics in the model-index."""
    base_model = [tower for tower in towers if tower and is_hub_id(tower)]
    eval_results = _eval_results(dataset, results, multimodal, problem_type)
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=TASK_TYPE,
        license="apache-2.0",
        language=sorted({spoken_language(code) for code in languages}),  # the Hub's field takes ISO codes only
        tags=[*TAGS, SYNTHETIC_DEMO_TAG] if synthetic_demo else list(TAGS),
        datasets=[dataset] if is_hub_id(dataset) else None,
        base_model=base_model or None,
        base_model_relation="finetune" if base_model else None,
        metrics=list(dict.fromkeys(result.metric_type for result in eval_results)) or None,
        model_name=model_name if results else None,
        eval_results=eval_results or None,
    )


ARITHMETIC_WORDS = {"bf16": "bf16", "int8": "int8 (8-bit activations)", "int8_7bit": "int8 with 7-bit activations"}


def agreement_words(record):
    """The agreement record as the card says it: its n, then "bf16 99.7 %, int8 (8-bit activations) 98.2 %, ..."."""
    if not record:
        return None
    shares = ", ".join(f"{ARITHMETIC_WORDS.get(name, name)} {share:.1%}" for name, share in record["agreement"].items())
    return f"on {record['tweets']:,} {record['split']} tweets, the share that kept the fp32 model's label: {shares}"


def _table_cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")


def _classification_results(results):
    """What the template's "Evaluation results" shows of a classifier's `results`."""
    return dict(
        overall_macro_f1={split: format_metric(result[OVERALL]["macro_f1"]) for split, result in results.items()},
        macro_f1_table=metrics_table(results, metric="macro_f1") if results else None,
        accuracy_table=metrics_table(results, metric="accuracy") if results else None,
    )


def _regression_results(results):
    """What the template's "Evaluation results" shows of a regression model's `results`: one table per metric."""
    return dict(
        overall_mse={split: format_metric(result[OVERALL]["mse"]) for split, result in results.items()},
        regression_tables=[(METRIC_TITLES[metric], metrics_table(results, metric=metric))
                           for metric in REGRESSION_METRICS] if results else [],
    )


def render_model_card(
    *, model_name, text_tower, vision_tower, dataset, languages, results, training_args, label_names=LABEL_NAMES,
    synthetic_demo=False, fusion_type="concat", lora=None, problem_type=CLASSIFICATION, calibration=None,
    backend_agreement=None
):
    """The README.md of a trained M2SA model, for `push_to_hub` or a local checkpoint folder.

    Args:
        model_name: the model's Hub id (or, for a model not pushed, its folder's name); used in the usage example
            and the model-index.
        text_tower: Hub id or path of the text encoder the model was built from (a Hub id is listed as
            `base_model:`).
        vision_tower: Hub id or path of the image encoder, or `None` for a text-only model.
        dataset: Hub id (listed under `datasets:`) or local path of the training data.
        languages: the model's `training_languages` (ISO codes, `<code>_mt` for machine-translated rows).
        results: split name -> `aggregate_runs` result; goes to the model-index (means) and to the per-language
            tables (mean ± std over several runs).
        training_args: hyper-parameter name -> value, shown as a table.
        label_names: the classes in id order (the training data's labels); for a regression model, the name of its
            one output.
        synthetic_demo: the model was trained on the embedded synthetic demo set: the card (and a Space serving the
            model) warns that its answers are not real sentiment.
        fusion_type: the model's `config.fusion_type` (a text-only model has only "concat").
        lora: None for full fine-tuning, or {"r", "alpha", "dropout", "towers", "target_modules"} of the LoRA
            adapters merged into the towers.
        problem_type: "single_label_classification", or "regression" for a model that gives one number per tweet
            (`results` then hold regression metrics: MSE, MAE, Pearson r, Spearman ρ).
        calibration: None, or the exported model's {split: `calibration_report`} (its temperature and its ECE,
            Brier score, NLL and class shares before and after).
        backend_agreement: None, or the model's agreement record (`config.backend_agreement`): how often each
            low-precision arithmetic gave fp32's label on the validation split.
    """
    if fusion_type not in FUSION_CHOICES:
        raise ValueError(f"fusion_type must be one of {FUSION_CHOICES}, got {fusion_type!r}.")
    multimodal = bool(vision_tower)
    regression = problem_type == REGRESSION
    metadata = card_data(model_name, dataset, languages, results, (text_tower, vision_tower), multimodal,
                         synthetic_demo, problem_type)
    card = ModelCard.from_template(
        metadata,
        template_path=MODEL_CARD_TEMPLATE,
        model_name=model_name,
        text_tower=hub_name(text_tower),
        vision_tower=vision_tower and hub_name(vision_tower),
        multimodal=multimodal,
        fusion_type=fusion_type,
        lora=lora,
        label_names=list(label_names),
        regression=regression,
        head_output="the value" if regression else "the three logits",
        synthetic_demo=synthetic_demo,
        dataset=hub_name(dataset),
        dataset_on_hub=is_hub_id(dataset),
        languages=list(languages),
        hyperparameters=[(_table_cell(name), _table_cell(value)) for name, value in training_args.items()],
        several_runs=any(result[OVERALL]["num_runs"] > 1 for result in results.values()),
        calibration=calibration_markdown(calibration) if calibration else None,
        agreement=agreement_words(backend_agreement),
        agreement_floor=f"{AGREEMENT_FLOOR:.0%}",
        **(_regression_results(results) if regression else _classification_results(results)),
        citation=M2SA_CITATION,
    )
    return f"{card.content}\n"  # Jinja drops the template's final newline
