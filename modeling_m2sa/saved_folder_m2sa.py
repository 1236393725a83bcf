"""Checks of a saved M2SA folder before transformers reads it, so that an incomplete or damaged folder fails with
the files named and what to do, not with a bare library error: the model's and the processor's `from_pretrained`
both use them."""

import json
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_imports
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

TOKENIZER_CONFIG = "tokenizer_config.json"
PROCESSOR_CONFIG = "processor_config.json"
IMAGE_PROCESSOR_CONFIG = "preprocessor_config.json"
REEXPORT = "Re-export it with train.py (or save_pretrained), or download it again."


def saved_folder(name_or_path, subfolder=None):
    """The local folder `from_pretrained` reads, or None (a Hub id)."""
    if name_or_path is None:
        return None
    folder = Path(name_or_path) / (subfolder or "")
    return folder if folder.is_dir() else None


def auto_map_modules(config_file):
    """The code modules named by the `auto_map` and `custom_pipelines` of a saved JSON config (none if it is absent)."""
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    references = list((config.get("auto_map") or {}).values())
    references += [entry.get("impl") for entry in (config.get("custom_pipelines") or {}).values()]
    flat = [name for reference in references for name in (reference if isinstance(reference, list) else [reference])]
    # "module.Class", or "repo--module.Class" for code kept in another Hub repo
    return [name.split("--")[-1].rsplit(".", 1)[0] for name in flat if name]


def check_code_files(folder, modules):
    """Fail, naming the files, when a saved `folder` lacks code that `trust_remote_code=True` loads from it: the
    `modules` and those they import relatively."""
    missing, seen, pending = [], set(), list(modules)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        file = folder / f"{module}.py"
        if file.is_file():
            pending += get_relative_imports(file)
        else:
            missing.append(file.name)
    if missing:
        raise OSError(
            f"{folder} lacks {', '.join(sorted(missing))}: code that `trust_remote_code=True` and "
            f"`pipeline(model=...)` load from a saved M2SA model, so the folder is incomplete. {REEXPORT}"
        )


def check_tokenizer_files(folder):
    """Fail, naming the files, when a saved processor `folder` lacks its tokenizer: transformers would otherwise build
    a tokenizer with an empty or default vocabulary in its place."""
    config_file = folder / TOKENIZER_CONFIG
    if not config_file.is_file():
        raise OSError(f"{folder} has no tokenizer: {TOKENIZER_CONFIG} is missing. {REEXPORT}")
    name = (json.loads(config_file.read_text(encoding="utf-8")).get("tokenizer_class") or "").removesuffix("Fast")
    # the fast class where there is one (transformers 4.x's slow XLM-R class is a placeholder without sentencepiece)
    tokenizer_class = tokenizer_class_from_name(f"{name}Fast") or tokenizer_class_from_name(name)
    vocabulary_files = sorted(set(getattr(tokenizer_class, "vocab_files_names", {}).values()))
    if vocabulary_files and not any((folder / name).is_file() for name in vocabulary_files):
        raise OSError(
            f"{folder} has no tokenizer vocabulary: its {tokenizer_class.__name__} needs one of "
            f"{', '.join(vocabulary_files)}, and none is there. {REEXPORT}"
        )


def damaged_safetensors_files(folder):
    """{file: why it is not a complete safetensors file} for the `*.safetensors` files of `folder` whose size does not
    match what their header describes (a truncated download or copy) or whose header cannot be read."""
    damaged = {}
    for file in sorted(folder.glob("*.safetensors")):
        size = file.stat().st_size
        try:
            with open(file, "rb") as stream:
                header_size = int.from_bytes(stream.read(8), "little")
                if not 0 < header_size <= size - 8:
                    raise ValueError(f"a header of {header_size} bytes in a file of {size}")
                header = json.loads(stream.read(header_size))
            data_size = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"),
                            default=0)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            damaged[file] = f"unreadable header: {error}"
            continue
        if size != 8 + header_size + data_size:
            damaged[file] = f"{size} bytes where its header describes {8 + header_size + data_size}"
    return damaged
