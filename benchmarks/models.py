"""The models benchmarks measure besides the ones they train in their run: the paper-scale model with random weights,
and trained models saved under outputs/ (the demo model of `python train.py`; the MVSA model, trained on first use)."""

import subprocess
import sys
import tempfile
from pathlib import Path

from transformers import CLIPImageProcessorPil, CLIPVisionConfig, XLMRobertaConfig

from benchmarks.harness import REPO_ROOT
from benchmarks.recipes import (
    PRETRAINED_RECIPE,
    dataset_settings,
    pretrained_text_tower,
    recipe_flags,
    run_setting,
    umsab_dataset,
)
from m2sa_training.training.tiny_towers import train_xlmr_tokenizer
from modeling_m2sa import M2SAConfig, M2SAForSequenceClassification, M2SAProcessor

DEMO_MODEL = REPO_ROOT / "outputs" / "m2sa-demo"
"""The offline demo model (tiny towers) `python train.py` writes."""
MVSA_MODEL = REPO_ROOT / "outputs" / "m2sa-mvsa-minilm"
"""The pretrained MiniLM text tower fine-tuned with a tiny image tower on the MVSA sample (`mvsa_model_dir`)."""
UMSAB_ENGLISH_MODEL = REPO_ROOT / "outputs" / "m2sa-umsab-en-minilm"
"""The pretrained MiniLM text tower fine-tuned on UMSAB English, text only (`umsab_english_model_dir`)."""
UMSAB_ENGLISH_TRAIN_FLAGS = ["--languages", "umsab_en", "--vision-model", "none", "--modalities", "text",
               *recipe_flags(PRETRAINED_RECIPE), "--seeds", "1"]
"""train.py flags of `UMSAB_ENGLISH_MODEL`: the UMSAB English recipe of `bench_pretrained`, seed 1."""




def paper_scale_model_and_processor(tokenizer_texts):
    """XLM-R base (the real 250,002-token vocabulary) + CLIP ViT-B/32 with random weights, concat fusion, and a
    processor whose 8,000-piece tokenizer is trained on `tokenizer_texts` (text padded or cut to 512 tokens)."""
    text_config = XLMRobertaConfig(vocab_size=250_002, max_position_embeddings=514, type_vocab_size=1)
    vision_config = CLIPVisionConfig(image_size=224, patch_size=32)  # ViT-B/32 sizes
    model = M2SAForSequenceClassification(M2SAConfig(text_config=text_config, vision_config=vision_config)).eval()
    tokenizer = train_xlmr_tokenizer(tokenizer_texts, vocab_size=8000)
    tokenizer.model_max_length = 512
    processor = M2SAProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=tokenizer, max_length=512)
    return model, processor


def mvsa_model_dir(given, data_root):
    """A trained model to measure agreement with fp32 on: `given`, else `MVSA_MODEL`, trained here if missing (the
    pretrained-MiniLM MVSA recipe of `bench_fusion`, seed 1, about 3 minutes)."""
    if given is not None:
        if not (Path(given) / "config.json").is_file():
            sys.exit(f"--agreement-model {given} holds no saved model (no config.json).")
        return Path(given)
    if not (MVSA_MODEL / "config.json").is_file():
        print(f"Training the agreement model into {MVSA_MODEL.relative_to(REPO_ROOT)} (pretrained MiniLM on MVSA, "
              f"seed 1) ...", flush=True)
        with tempfile.TemporaryDirectory() as work:
            dataset, config, flags = dataset_settings(["mvsa"], Path(work), data_root)["mvsa"]
            run_setting(dataset, config, flags, ["--modalities", "multimodal"], [1], MVSA_MODEL, Path(work) / "cache")
    return MVSA_MODEL


def umsab_english_model_dir(given, data_root):
    """`given`, else `UMSAB_ENGLISH_MODEL`, trained here by train.py on first use (about 6 minutes on 2 cores)."""
    if given is not None:
        if not (given / "config.json").is_file():
            sys.exit(f"--model {given} holds no saved model (no config.json).")
        return given
    if not (UMSAB_ENGLISH_MODEL / "config.json").is_file():
        dataset = umsab_dataset(REPO_ROOT / "outputs" / "umsab-dataset", data_root)
        print(f"Training {UMSAB_ENGLISH_MODEL.relative_to(REPO_ROOT)} (MiniLM on UMSAB English, seed 1) ...",
              flush=True)
        subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), "--dataset", str(dataset), "--text-model",
                        pretrained_text_tower(), "--output-dir", str(UMSAB_ENGLISH_MODEL), "--overwrite-output-dir",
                        *UMSAB_ENGLISH_TRAIN_FLAGS], check=True)
    return UMSAB_ENGLISH_MODEL
