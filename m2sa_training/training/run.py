"""A whole training job: checks, one run per (modality, seed), reports, the exported model and its card."""

import json
import logging
import shutil
from pathlib import Path

from dataset_script.demo import DEMO_SOURCE
from m2sa_files.atomic import is_partial, staged_into, write_text_atomically
from modeling_m2sa.backends_m2sa import CONFIG_AGREEMENT_KEY
from modeling_m2sa.configuration_m2sa import REGRESSION
from modeling_m2sa.errors_m2sa import M2SAError
from modeling_m2sa.normalization_m2sa import normalize_tweet

from ..evaluation.calibration import calibration_markdown, reliability_figure
from ..evaluation.metrics import (
    aggregate_runs,
    compute_metrics,
    compute_regression_metrics,
    majority_baseline_predictions,
    mean_baseline_predictions,
)
from ..evaluation.model_card import render_model_card
from ..evaluation.reports import MEAN_BASELINE, comparison_markdown, write_evaluation_report
from ..processes import process_state
from .data import blank_texts, check_label_names, has_images
from ..dataset_sources import (
    dataset_configs,
    demo_dataset_path,
    load_training_splits,
    resolve_configs,
    training_languages,
)
from .loop import (
    RunSpec,
    job_accelerator,
    latest_checkpoint,
    may_leave_parameters_unused,
    read_checkpoint_state,
    train_run,
)
from .lora import lora_settings
from .model_setup import build_model_and_processor, check_tower_exists, tower_paths
from .options import NO_VISION, value_when_absent

logger = logging.getLogger(__name__)

RUN_CONFIG = "run_config.json"
MODALITY_NAMES = {"multimodal": "multimodal", "text": "text-only", "image": "image-only"}


def run_name(modality, seed):
    return f"{modality}-seed{seed}"


def options_changed_since(config_path, options):
    """The sorted names of the options that define a run (`run_identity`) and differ from the run saved in
    `config_path` (a run_config.json)."""
    previous = json.loads(config_path.read_text())
    return sorted(key for key, value in options.run_identity().items() if saved_value(previous, key) != value)


def saved_value(saved_options, name):
    """The value of option `name` in a saved run_config.json: as saved, else `value_when_absent` (the default of an
    option added later; for any other option nothing, which differs from every value)."""
    return saved_options[name] if name in saved_options else value_when_absent(name)


def check_output_dir(options):
    """Refuse an output directory that holds a different run, unless --overwrite-output-dir."""
    output_dir = Path(options.output_dir)
    config_path = output_dir / RUN_CONFIG
    if config_path.is_file() and not options.overwrite_output_dir:
        changed = options_changed_since(config_path, options)
        if changed:
            raise M2SAError(
                f"{output_dir} already holds a different run (options differ: {', '.join(changed)}). Choose another "
                f"--output-dir, or pass --overwrite-output-dir to replace it.",
                code="output_dir_holds_other_run",
            )
    elif (output_dir.exists() and any(not is_partial(path) for path in output_dir.iterdir())
          and not config_path.is_file() and not options.overwrite_output_dir):
        raise M2SAError(
            f"{output_dir} is not empty and was not written by train.py. Choose another --output-dir, or pass "
            f"--overwrite-output-dir.",
            code="output_dir_not_empty",
        )


def resume_points(options, runs):
    """Checkpoint to resume from per run name (None: start fresh); every checkpoint is validated here."""
    if options.resume_from_checkpoint is None:
        return {name: None for name in runs}
    if options.resume_from_checkpoint == "latest":
        points = {name: latest_checkpoint(Path(options.output_dir) / "runs" / name) for name in runs}
    else:
        if len(runs) != 1:
            raise M2SAError(
                f"This job has {len(runs)} runs ({', '.join(runs)}); use --resume-from-checkpoint latest to continue "
                f"each from its last checkpoint.",
                code="checkpoint_for_several_runs",
            )
        checkpoint = Path(options.resume_from_checkpoint)
        if not checkpoint.is_dir():
            raise M2SAError(f"Checkpoint directory {str(checkpoint)!r} does not exist.", code="missing_checkpoint")
        points = {runs[0]: checkpoint}
    for checkpoint in points.values():
        if checkpoint is not None:
            read_checkpoint_state(checkpoint)
    return points


def prepare(options):
    """Every check that can fail, before any training time is spent; returns (dataset, configs, splits)."""
    check_tower_exists(options.text_model, "text")
    check_tower_exists(options.vision_model, "vision")
    dataset = options.dataset or demo_dataset_path(options.cache_dir)
    configs, translated_for_training = resolve_configs(options.languages, options.include_translated,
                                                       dataset_configs(dataset), options.dataset_config)
    splits = load_training_splits(dataset, configs, options, translated_for_training)
    if options.vision_model != NO_VISION and not has_images(splits["train"]):
        raise M2SAError(
            f"The training data ({dataset}, {', '.join(configs)}) has no images, but an image tower was chosen. "
            f"Pass --vision-model none to train a text-only model.",
            code="no_images",
        )
    check_output_dir(options)
    return dataset, configs, splits


def run_training(options, accelerator=None):
    """Train every (modality, seed) run; export the first modality's first-seed model with its card and reports.

    The runs share one `Accelerator`: by default this job makes its own and ends it (`end_training`) when done; a
    longer job (the grid) passes its `accelerator` and ends it itself.
    """
    state = process_state()
    with state.main_process_first():  # the main process checks, builds the demo set and fills the datasets cache
        dataset, configs, splits = prepare(options)
        runs = [run_name(modality, seed) for modality in options.modalities for seed in options.seeds]
        resume_from = resume_points(options, runs)
        output_dir = Path(options.output_dir)
        if state.is_main_process:
            output_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomically(output_dir / RUN_CONFIG, options.to_json())

    owns_accelerator = accelerator is None
    if owns_accelerator:
        accelerator = job_accelerator(options, may_leave_parameters_unused(options))
    if options.report_to:  # one tracker session per job, written into its output directory; runs log under their names
        accelerator.project_configuration.logging_dir = str(output_dir)
        accelerator.init_trackers(output_dir.name, config=json.loads(options.to_json()))
    try:
        return train_and_report(options, accelerator, dataset, splits, resume_from)
    finally:
        if owns_accelerator:
            accelerator.end_training()
        else:
            for tracker in accelerator.trackers:
                tracker.finish()
            accelerator.trackers = []  # the next job of the accelerator starts its own


def train_and_report(options, accelerator, dataset, splits, resume_from):
    """Every run of the job with `accelerator`, then the reports, the exported model and its card."""
    state = process_state()
    output_dir = Path(options.output_dir)
    # a tiny tower's tokenizer learns its vocabulary from the texts as the processor will write them
    train_texts = [normalize_tweet(text, options.text_normalization) for text in splits["train"]["text"]]
    per_modality = {modality: [] for modality in options.modalities}
    image_errors = {}  # (split, row position) -> reason, over every run: an image is unreadable whatever reads it
    exported = None
    # Every modality of a seed starts from the same towers, so `tiny` towers are built once per seed.
    towers = {seed: tower_paths(options, train_texts, output_dir / "towers" / f"seed{seed}", seed)
              for seed in options.seeds}
    languages = training_languages(splits["train"])  # recorded in every model's config
    for modality in options.modalities:
        # The image-only model sees the same rows with their texts blanked.
        modality_splits = datasets_for_modality(splits, modality)
        for seed in options.seeds:
            spec = RunSpec(modality, seed, output_dir / "runs" / run_name(modality, seed),
                           resume_from[run_name(modality, seed)])
            text_tower, vision_tower = towers[seed]
            model, processor = build_model_and_processor(options, modality, text_tower, vision_tower, seed,
                                                         training_languages=languages)
            label_names = check_label_names(splits["train"], model.config)
            outcome = train_run(accelerator, options, spec, model, processor, modality_splits)
            if state.is_main_process:
                write_text_atomically(spec.run_dir / "results.json", json.dumps(outcome, indent=2))
            per_modality[modality].append(outcome["results"])
            for split_name, rows in outcome["image_errors"].items():
                image_errors.update({(split_name, row): reason for row, reason in rows.items()})
            if exported is None:
                exported = (spec.run_dir, processor, text_tower, vision_tower if modality != "text" else None,
                            label_names, outcome.get("calibration"))

    summary = summarise(options, splits, per_modality)
    comparison = comparison_markdown(summary)
    outcome = {"output_dir": output_dir, "comparison": comparison, "summary": summary,
               "invalid_images": invalid_image_records(splits, image_errors)}
    if state.is_main_process:
        write_outputs(options, dataset, splits, outcome, exported)
    state.wait_for_everyone()
    return outcome


def datasets_for_modality(splits, modality):
    if modality != "image":
        return splits
    return type(splits)({name: blank_texts(split) for name, split in splits.items()})


def invalid_image_records(splits, image_errors):
    """One record per unusable image: its split, row position, tweet id (when the data has one) and reason."""
    records = []
    for (split_name, row), reason in sorted(image_errors.items()):
        record = {"split": split_name, "row": row}
        if "tweet_id" in splits[split_name].column_names:
            record["tweet_id"] = splits[split_name][row]["tweet_id"]
        records.append({**record, "reason": reason})
    return records


def summarise(options, splits, per_modality):
    """Per split: each modality's results (mean ± std over seeds) and the baseline: the majority class, or for
    regression the training mean."""
    train_labels = list(splits["train"]["label"])
    summary = {}
    for split in ("validation", "test"):
        summary[split] = {
            MODALITY_NAMES[modality]: aggregate_runs([results[split] for results in runs_of_modality])
            for modality, runs_of_modality in per_modality.items()
        }
        labels, languages = list(splits[split]["label"]), list(splits[split]["language"])
        if options.problem_type == REGRESSION:
            baseline = compute_regression_metrics(
                labels, mean_baseline_predictions(train_labels, len(labels)), languages)
            summary[split][MEAN_BASELINE] = aggregate_runs([baseline])
        else:
            majority = compute_metrics(labels, majority_baseline_predictions(train_labels, len(labels)), languages,
                                       splits[split].features["label"].names)
            summary[split]["majority"] = aggregate_runs([majority])
    return summary


def write_outputs(options, dataset, splits, outcome, exported):
    """Reports, the exported model (first modality, first seed) with its processor and card; optional upload.

    Everything is written into a hidden folder first and each file then renamed into `output_dir`, so a run killed
    here leaves every file complete (old or new); resuming writes them all again."""
    output_dir = outcome["output_dir"]
    with staged_into(output_dir) as staging:
        write_reports_and_model(options, dataset, splits, outcome, exported, staging)
    if options.push_to_hub:
        push_output_dir(output_dir, options.push_to_hub)


def write_reports_and_model(options, dataset, splits, outcome, exported, directory):
    """Evaluation reports, comparison, invalid images, the exported model with its processor, and its card."""
    summary = outcome["summary"]
    main_modality = MODALITY_NAMES[options.modalities[0]]
    main_results = {split: summary[split][main_modality] for split in ("validation", "test")}
    kind = " regression" if options.problem_type == REGRESSION else ""
    write_evaluation_report(directory, main_results,
                            title=f"M2SA {main_modality}{kind} ({len(options.seeds)} seed(s))")
    (directory / "comparison.md").write_text(outcome["comparison"] + "\n")
    (directory / "comparison.json").write_text(json.dumps(summary, indent=2))
    (directory / "invalid_images.json").write_text(json.dumps(outcome["invalid_images"], indent=2))

    run_dir, processor, text_tower, vision_tower, label_names, calibration = exported
    if calibration:
        write_calibration_report(directory, calibration)
    for path in (run_dir / "best").iterdir():
        if path.is_dir():  # the PEFT adapters of --save-adapter
            shutil.copytree(path, directory / path.name)
        else:
            shutil.copy2(path, directory / path.name)
    processor.save_pretrained(directory)
    card = render_model_card(
        model_name=options.push_to_hub or outcome["output_dir"].name,  # its Hub id once pushed
        text_tower=text_tower,
        vision_tower=vision_tower,
        dataset=dataset if options.dataset else "M2SA embedded demo set (synthetic)",
        languages=training_languages(splits["train"]),
        results=main_results,
        training_args=json.loads(options.to_json()),
        label_names=label_names,
        problem_type=options.problem_type,
        synthetic_demo=trained_on_synthetic_demo(splits["train"]),
        fusion_type=options.fusion if vision_tower else "concat",
        lora=lora_settings(options, has_vision_tower=vision_tower is not None),
        calibration=calibration,
        backend_agreement=json.loads((directory / "config.json").read_text()).get(CONFIG_AGREEMENT_KEY),
    )
    (directory / "README.md").write_text(card)


def write_calibration_report(directory, calibration):
    """`calibration.json` (the exported model's temperature and its metrics before and after, per split) and a
    reliability diagram per split."""
    (directory / "calibration.json").write_text(json.dumps(calibration, indent=2))
    with open(directory / "evaluation.md", "a", encoding="utf-8") as evaluation:
        evaluation.write(f"\n## Calibration of the exported model\n\n{calibration_markdown(calibration)}\n")
    for split, report in calibration.items():
        figure = reliability_figure(report, f"Reliability on the {split} split ({report['tweets']} tweets)")
        figure.savefig(directory / f"reliability_diagram_{split}.png", dpi=120)


def trained_on_synthetic_demo(train_split):
    """Whether training rows come from the synthetic demo set (their `source` says so, however the set was named)."""
    return "source" in train_split.column_names and DEMO_SOURCE in set(train_split.unique("source"))


def push_output_dir(output_dir, repo_id):
    """Upload the model, processor, code, card and reports (not the per-run checkpoints or starting towers)."""
    import huggingface_hub

    api = huggingface_hub.HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=str(output_dir), repo_id=repo_id,
                      ignore_patterns=["runs/*", "towers/*", ".*.partial*"],  # and what killed writes left
                      commit_message="Upload M2SA model trained with train.py")
