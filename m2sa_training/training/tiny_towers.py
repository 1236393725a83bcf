"""Small text and image towers built from configs, with a tokenizer trained on the given texts.

They are saved with `save_pretrained`, so they load by path through the same `from_pretrained` code a Hub id uses,
into a temporary folder that replaces the target once complete (a killed save leaves no tower without its tokenizer).
They back the offline `tiny` training preset and the test suite, and need no downloads.
"""

import json

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    BitImageProcessorPil,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
    SiglipVisionModel,
    XLMRobertaConfig,
    XLMRobertaModel,
    XLMRobertaTokenizer,
)

from m2sa_files.atomic import atomic_directory

TEXT_TOWER_KINDS = ("xlm-roberta", "bert")
VISION_TOWER_KINDS = ("clip", "clip-full", "dinov2", "siglip")
XLMR_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R's ids 0..3
BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_xlmr_tokenizer(texts, vocab_size):
    """A SentencePiece-style Unigram tokenizer (NFKC + Metaspace) trained on `texts`, as an XLM-R tokenizer."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=XLMR_SPECIAL_TOKENS, unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    vocab = json.loads(tokenizer.to_str())["model"]["vocab"]
    # The trainer's piece scores vary in their last digits from process to process; rounded and sorted, the same
    # texts always give the same tokenizer (which resuming a run relies on).
    pieces = sorted(((piece, round(score, 3)) for piece, score in vocab[len(XLMR_SPECIAL_TOKENS):]),
                    key=lambda entry: (-entry[1], entry[0]))
    specials = [tuple(entry) for entry in vocab[: len(XLMR_SPECIAL_TOKENS)]]
    return XLMRobertaTokenizer(vocab=specials + pieces + [("<mask>", 0.0)])


def train_bert_tokenizer(texts, vocab_size):
    """A cased WordPiece tokenizer trained on `texts`, as a BERT tokenizer."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return BertTokenizer(vocab=tokenizer.get_vocab(), do_lower_case=False)


def save_tiny_text_tower(
    directory, texts, kind="xlm-roberta", vocab_size=2000, hidden_size=32, num_layers=2, num_heads=2, max_length=128
):
    """Train a tokenizer on `texts`, build a small randomly initialised text encoder and save both to `directory`."""
    if kind not in TEXT_TOWER_KINDS:
        raise ValueError(f"Unknown tiny text tower kind {kind!r}; choose one of {TEXT_TOWER_KINDS}.")
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise ValueError("Training a tokenizer needs at least one non-empty text.")
    sizes = dict(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
    )
    if kind == "xlm-roberta":
        tokenizer = train_xlmr_tokenizer(texts, vocab_size)
        config = XLMRobertaConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=max_length + 2,  # XLM-R positions start after the padding index
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sizes,
        )
        model = XLMRobertaModel(config)
    else:
        tokenizer = train_bert_tokenizer(texts, vocab_size)
        config = BertConfig(
            vocab_size=len(tokenizer), max_position_embeddings=max_length, pad_token_id=tokenizer.pad_token_id, **sizes
        )
        model = BertModel(config)
    tokenizer.model_max_length = max_length
    with atomic_directory(directory) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return directory


def save_tiny_vision_tower(directory, kind="clip", image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2):
    """Build a small randomly initialised image encoder with its image processor and save both to `directory`.

    `kind="clip-full"` saves a whole CLIP model (text and vision), like the `openai/clip-vit-*` checkpoints.
    """
    if kind not in VISION_TOWER_KINDS:
        raise ValueError(f"Unknown tiny vision tower kind {kind!r}; choose one of {VISION_TOWER_KINDS}.")
    sizes = dict(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        image_size=image_size,
        patch_size=patch_size,
    )
    if kind == "dinov2":
        model = Dinov2Model(Dinov2Config(**sizes))
        image_processor = BitImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
    elif kind == "siglip":
        model = SiglipVisionModel(SiglipVisionConfig(**sizes))
        image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    else:
        vision_config = CLIPVisionConfig(**sizes)
        if kind == "clip":
            model = CLIPVisionModel(vision_config)
        else:
            text_config = dict(hidden_size=hidden_size, intermediate_size=4 * hidden_size, num_hidden_layers=1,
                               num_attention_heads=num_heads, vocab_size=64, bos_token_id=0, eos_token_id=1)
            model = CLIPModel(CLIPConfig(text_config=text_config, vision_config=vision_config.to_dict(), projection_dim=16))
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
    with atomic_directory(directory) as staging:
        model.save_pretrained(staging)
        image_processor.save_pretrained(staging)
    return directory
