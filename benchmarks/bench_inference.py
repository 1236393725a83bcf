"""Inference speed at paper scale with random weights: the paper's demo path against `predict`, in one run.

Towers: XLM-R base (real 250,002-token vocabulary) + CLIP ViT-B/32, random weights (no downloads). Tweets: real
UMSAB texts in 8 languages, half of them with a real MVSA image (from ../shared/data). The paper's demo path
classifies one tweet at a time with the text padded to 512 tokens; the model's own pipeline (saved with it, loaded
with `pipeline(model=DIR, trust_remote_code=True)`) and `predict` (the same pipeline as a function) sort by length,
pad each batch to its longest tweet and run under `torch.inference_mode` (fp32, then bf16 autocast).

    python benchmarks/bench_inference.py [--num-tweets 96] [--batch-size 32]
"""

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from m2sa_training.tiny_towers import train_xlmr_tokenizer  # noqa: E402
from modeling_m2sa import M2SAConfig, M2SAForSequenceClassification, M2SAProcessor, load_image, predict  # noqa: E402
from modeling_m2sa.pipeline_m2sa import cpu_has_native_bf16  # noqa: E402
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, XLMRobertaConfig, pipeline  # noqa: E402

DATA = REPO_ROOT.parent / "shared" / "data"


def load_tweets(num_tweets, seed=0, image_every=2):
    """Real UMSAB texts round-robin over languages; every `image_every`-th tweet (from the first) gets a real MVSA
    image."""
    languages = sorted(path.name for path in (DATA / "umsab").iterdir())
    per_language = {lang: (DATA / "umsab" / lang / "val_text.txt").read_text(encoding="utf-8").splitlines()
                    for lang in languages}
    image_paths = sorted((DATA / "mvsa_sample" / "data").glob("*.jpg"))
    rng = random.Random(seed)
    texts, images = [], []
    for index in range(num_tweets):
        texts.append(rng.choice(per_language[languages[index % len(languages)]]))
        images.append(image_paths[index % len(image_paths)] if index % image_every == 0 else None)
    return texts, images


def paper_scale_model_and_processor(tokenizer_texts):
    text_config = XLMRobertaConfig(vocab_size=250_002, max_position_embeddings=514, type_vocab_size=1)
    vision_config = CLIPVisionConfig(image_size=224, patch_size=32)  # ViT-B/32 sizes
    model = M2SAForSequenceClassification(M2SAConfig(text_config=text_config, vision_config=vision_config)).eval()
    tokenizer = train_xlmr_tokenizer(tokenizer_texts, vocab_size=8000)
    tokenizer.model_max_length = 512
    processor = M2SAProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=tokenizer, max_length=512)
    return model, processor


def paper_demo_path(model, processor, texts, images):
    """One tweet at a time, text padded to 512 tokens, fp32, as in the paper's demo code."""
    predictions = []
    with torch.no_grad():
        for text, image in zip(texts, images):
            encoded = processor.tokenizer([text], padding="max_length", truncation=True, max_length=512,
                                          return_tensors="pt")
            inputs = dict(encoded)
            if image is not None:
                pixel_values = processor.image_processor(images=[load_image(image)], return_tensors="pt")
                inputs["pixel_values"] = pixel_values["pixel_values"]
                inputs["has_image"] = torch.tensor([True])
            predictions.append(int(model(**inputs).logits.argmax(-1)))
    return predictions


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-tweets", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bf16-num-tweets", type=int, default=None,
                        help="tweets for the bf16 run (default: all; 16 on CPUs without native bf16, where it crawls)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "inference.json")
    args = parser.parse_args()
    if not (DATA / "umsab").is_dir():
        sys.exit(f"This benchmark reads real tweets from {DATA}; that folder is missing.")
    torch.manual_seed(0)
    native_bf16 = cpu_has_native_bf16()
    bf16_count = args.bf16_num_tweets or (args.num_tweets if native_bf16 else min(16, args.num_tweets))

    texts, images = load_tweets(args.num_tweets)
    model, processor = paper_scale_model_and_processor(texts * 4)
    predict(model, processor, texts[:4], images[:4])  # warm-up

    paper, paper_seconds = timed(paper_demo_path, model, processor, texts, images)
    with tempfile.TemporaryDirectory() as saved:
        model.save_pretrained(saved)
        processor.save_pretrained(saved)
        classify = pipeline(model=saved, trust_remote_code=True, device="cpu")
        tweets = [{"text": text, "image": image} for text, image in zip(texts, images)]
        classify(tweets[:4])  # warm-up
        piped, pipeline_seconds = timed(classify, tweets, batch_size=args.batch_size)
        del classify
    fp32, fp32_seconds = timed(predict, model, processor, texts, images, batch_size=args.batch_size)
    bf16, bf16_seconds = timed(predict, model, processor, texts[:bf16_count], images[:bf16_count],
                               batch_size=args.batch_size, autocast_dtype="bf16")
    fp32_labels = [model.config.label2id[result["label"]] for result in fp32]
    bf16_labels = [model.config.label2id[result["label"]] for result in bf16]
    pipeline_labels = [model.config.label2id[result["label"]] for result in piped]
    rates = {
        "paper_demo_fp32": args.num_tweets / paper_seconds,
        "pipeline_fp32": args.num_tweets / pipeline_seconds,
        "predict_fp32": args.num_tweets / fp32_seconds,
        "predict_bf16": bf16_count / bf16_seconds,
    }
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                   f"torch {torch.__version__}, native bf16: {native_bf16}",
        "num_tweets": args.num_tweets,
        "bf16_num_tweets": bf16_count,
        "batch_size": args.batch_size,
        "samples_per_second": rates,
        "speedup_fp32": rates["predict_fp32"] / rates["paper_demo_fp32"],
        "speedup_pipeline_fp32": rates["pipeline_fp32"] / rates["paper_demo_fp32"],
        "speedup_bf16": rates["predict_bf16"] / rates["paper_demo_fp32"],
        "argmax_agreement_fp32_vs_paper": sum(a == b for a, b in zip(fp32_labels, paper)) / len(paper),
        "argmax_agreement_pipeline_vs_paper": sum(a == b for a, b in zip(pipeline_labels, paper)) / len(paper),
        "argmax_agreement_bf16_vs_fp32": sum(a == b for a, b in zip(bf16_labels, fp32_labels)) / bf16_count,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Machine: {report['machine']}; {args.num_tweets} tweets (bf16: {bf16_count}), batch {args.batch_size}\n")
    print("| path | samples/s | vs paper demo path |")
    print("|---|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.2f} | {rate / rates['paper_demo_fp32']:.1f}x |")
    print(f"\nargmax agreement: fp32 predict vs paper path {report['argmax_agreement_fp32_vs_paper']:.1%}, "
          f"pipeline vs paper path {report['argmax_agreement_pipeline_vs_paper']:.1%}, "
          f"bf16 vs fp32 {report['argmax_agreement_bf16_vs_fp32']:.1%} (over {bf16_count} tweets)")


if __name__ == "__main__":
    main()
