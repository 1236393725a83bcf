"""M2SA: multimodal (text + image), multilingual sentiment analysis of tweets, native to the Hugging Face stack.

The package loads lazily, as transformers does: `import modeling_m2sa` costs nothing, and its submodules (torch
included) load when one of the names below is first used. That first use also registers M2SA with the transformers
Auto classes and the `m2sa-sentiment` pipeline task, so `from modeling_m2sa import M2SAForSequenceClassification` (or
any other name) is all it takes for `AutoModelForSequenceClassification.from_pretrained(DIR)` and
`pipeline("m2sa-sentiment", ...)`. Without this package, `trust_remote_code=True` loads the code that
`save_pretrained` writes next to a model. The dependency-free `modeling_m2sa.labels_m2sa` loads without torch.
"""

import importlib

_EXPORTS = {
    "LABEL_NAMES": "labels_m2sa",
    "M2SAConfig": "configuration_m2sa",
    "predict": "inference",
    "M2SAForSequenceClassification": "modeling_m2sa",
    "M2SAModel": "modeling_m2sa",
    "M2SAModelOutput": "modeling_m2sa",
    "M2SAPreTrainedModel": "modeling_m2sa",
    "M2SASequenceClassifierOutput": "modeling_m2sa",
    "PIPELINE_TASK": "configuration_m2sa",
    "M2SASentimentPipeline": "pipeline_m2sa",
    "EncodedTweets": "processing_m2sa",
    "M2SAProcessor": "processing_m2sa",
    "InvalidImageError": "images_m2sa",
    "load_image": "images_m2sa",
}

__all__ = sorted(_EXPORTS)
_registered = False


def register_auto_classes():
    """Register M2SA with the transformers Auto classes and the `m2sa-sentiment` pipeline task (done once, on the
    first use of any name of this package)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoProcessor
    from transformers.pipelines import PIPELINE_REGISTRY

    from .configuration_m2sa import PIPELINE_TASK, M2SAConfig
    from .modeling_m2sa import M2SAForSequenceClassification, M2SAModel
    from .pipeline_m2sa import M2SASentimentPipeline
    from .processing_m2sa import M2SAProcessor

    AutoConfig.register(M2SAConfig.model_type, M2SAConfig, exist_ok=True)
    AutoModel.register(M2SAConfig, M2SAModel, exist_ok=True)
    AutoModelForSequenceClassification.register(M2SAConfig, M2SAForSequenceClassification, exist_ok=True)
    AutoProcessor.register(M2SAConfig, M2SAProcessor, exist_ok=True)
    M2SAConfig.register_for_auto_class()
    M2SAModel.register_for_auto_class("AutoModel")
    M2SAForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    M2SAProcessor.register_for_auto_class("AutoProcessor")
    PIPELINE_REGISTRY.register_pipeline(
        PIPELINE_TASK, pipeline_class=M2SASentimentPipeline, pt_model=AutoModelForSequenceClassification,
        type="multimodal",
    )


def __getattr__(name):
    global _registered
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _registered and name != "LABEL_NAMES":
        register_auto_classes()
        _registered = True
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later uses find it without coming here
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
