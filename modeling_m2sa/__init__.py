"""M2SA: multimodal (text + image), multilingual sentiment analysis of tweets, native to the Hugging Face stack.

Importing this package registers M2SA with the transformers Auto classes, and `save_pretrained` writes the code
needed to load a saved model with `trust_remote_code=True` where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoProcessor,
)

from .configuration_m2sa import LABEL_NAMES, M2SAConfig
from .inference import predict
from .modeling_m2sa import (
    M2SAForSequenceClassification,
    M2SAModel,
    M2SAModelOutput,
    M2SAPreTrainedModel,
    M2SASequenceClassifierOutput,
)
from .processing_m2sa import EncodedTweets, InvalidImageError, M2SAProcessor, load_image

AutoConfig.register(M2SAConfig.model_type, M2SAConfig, exist_ok=True)
AutoModel.register(M2SAConfig, M2SAModel, exist_ok=True)
AutoModelForSequenceClassification.register(M2SAConfig, M2SAForSequenceClassification, exist_ok=True)
AutoProcessor.register(M2SAConfig, M2SAProcessor, exist_ok=True)
M2SAConfig.register_for_auto_class()
M2SAModel.register_for_auto_class("AutoModel")
M2SAForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
M2SAProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "LABEL_NAMES",
    "EncodedTweets",
    "InvalidImageError",
    "M2SAConfig",
    "M2SAForSequenceClassification",
    "M2SAModel",
    "M2SAModelOutput",
    "M2SAPreTrainedModel",
    "M2SASequenceClassifierOutput",
    "M2SAProcessor",
    "load_image",
    "predict",
]
