"""Messages that libraries print while M2SA's commands start, and that say nothing about M2SA's work, kept off the
terminal. transformers imports torchao whenever it is installed (its quantizers are registered at import), and
torchao 0.18's wheel then reports its optional CUDA and Python-3.10 kernels as "Failed to load", and torch reports
torchao's use of a deprecated `register_constant`. M2SA's commands use neither; every other message of these
loggers, and every other library's, is shown as before."""

import logging

KNOWN_NOISE = {
    "torchao": ("Failed to load ",),
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported by torch.compile",),
}
"""{logger name: message fragments} of what is dropped."""


class KnownNoiseFilter(logging.Filter):
    def __init__(self, fragments):
        super().__init__()
        self.fragments = fragments

    def filter(self, record):
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def drop_known_library_noise():
    """Install the filters (once per logger; safe to call again)."""
    for name, fragments in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(installed, KnownNoiseFilter) for installed in logger.filters):
            logger.addFilter(KnownNoiseFilter(fragments))
