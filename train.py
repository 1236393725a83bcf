"""Train an M2SA model.

    python train.py                                   # offline default: tiny towers on the embedded demo set
    accelerate launch train.py --text-model cardiffnlp/twitter-xlm-roberta-base-sentiment-multilingual \
        --vision-model openai/clip-vit-base-patch32 --dataset <org>/m2sa --languages all --mixed-precision bf16
    python train.py --config configs/paper_xlmr_sm_clip.yaml --seeds 42 123 777 2020 31337
    python train.py --preset tiny --dataset ./m2sa-umsab --languages all --vision-model none
    python train.py --dataset cardiffnlp/tweet_sentiment_multilingual --dataset-config english german \
        --vision-model none --modalities text                   # any dataset: other configs, columns and labels
    python train.py --dataset ./mvsa --image-column photo --label-column sentiment   # validation/test carved
    python train.py --dataset tweets.csv --text-column tweet --label-column sentiment --vision-model none
    python train.py --dataset intensity.csv --label-column intensity --problem-type regression --vision-model none
    python train.py --fusion gated --image-dropout 0.3 --lora-r 8 --gradient-checkpointing   # beyond the paper's head

`python train.py --help` lists every option. The output directory holds the model, its processor, remote code,
a model card, evaluation reports (JSON, Markdown, PNG) and per-run checkpoints.
"""

from m2sa_training.command_line import run_command
from m2sa_training.processes import process_state
from m2sa_training.training import parse_options, run_training


def main(argv=None):
    outcome = run_command(lambda: run_training(parse_options(argv)))
    if not process_state().is_main_process:
        return
    print(f"\n{outcome['comparison']}\n")
    if outcome["invalid_images"]:
        print(f"{len(outcome['invalid_images'])} unreadable images were used as 'no image'; see invalid_images.json")
    output_dir = outcome["output_dir"]
    print(f"Model, processor, model card and reports: {output_dir}")
    print("Try it (needs only transformers):\n"
          f"  python -c \"from transformers import pipeline; "
          f"print(pipeline(model='{output_dir}', trust_remote_code=True)('What a wonderful day!'))\"\n"
          f"  python space/app.py --model {output_dir}")


if __name__ == "__main__":
    main()
