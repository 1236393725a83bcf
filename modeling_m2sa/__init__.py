"""M2SA: multimodal (text + image), multilingual sentiment analysis of tweets, native to the Hugging Face stack.

Importing this package registers M2SA with the transformers Auto classes and the `m2sa-sentiment` pipeline task, and
`save_pretrained` writes the code needed to load a saved model, and to run `pipeline(model=...)` on it, with
`trust_remote_code=True` where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoProcessor,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_m2sa import LABEL_NAMES, M2SAConfig
from .inference import predict
from .modeling_m2sa import (
    M2SAForSequenceClassification,
    M2SAModel,
    M2SAModelOutput,
    M2SAPreTrainedModel,
    M2SASequenceClassifierOutput,
)
from .pipeline_m2sa import PIPELINE_TASK, M2SASentimentPipeline
from .processing_m2sa import EncodedTweets, InvalidImageError, M2SAProcessor, load_image

AutoConfig.register(M2SAConfig.model_type, M2SAConfig, exist_ok=True)
AutoModel.register(M2SAConfig, M2SAModel, exist_ok=True)
AutoModelForSequenceClassification.register(M2SAConfig, M2SAForSequenceClassification, exist_ok=True)
AutoProcessor.register(M2SAConfig, M2SAProcessor, exist_ok=True)
M2SAConfig.register_for_auto_class()
M2SAModel.register_for_auto_class("AutoModel")
M2SAForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
M2SAProcessor.register_for_auto_class("AutoProcessor")
PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK, pipeline_class=M2SASentimentPipeline, pt_model=AutoModelForSequenceClassification, type="multimodal"
)

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
    "M2SASentimentPipeline",
    "PIPELINE_TASK",
    "M2SAProcessor",
    "load_image",
    "predict",
]
