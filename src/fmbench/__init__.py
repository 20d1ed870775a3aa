"""fmbench: how does a CNN compare with a Vision Transformer on Fashion-MNIST?"""

__version__ = "0.1.0"

from fmbench import logs as _logs  # noqa: E402,F401  (the "fmbench" logger's stderr handler)

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# The public API (fmbench/api/, docs/api.md), imported on first use so that `import fmbench`
# and the command line stay quick.
_API = ("list_models", "create_model", "load_data", "Run", "train", "load_run", "resume", "evaluate", "predict",
        "compare", "explain_images", "explain_run", "export_onnx", "run_study", "study_data_size", "study_equal_budget", "study_robustness",
        "tune", "Tuned")
__all__ = ["__version__", "CLASSES", *_API]


def __getattr__(name: str):
    if name in _API:
        from fmbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'fmbench' has no attribute {name!r}")
