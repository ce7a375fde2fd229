"""`tformer serve`: an HTTP translation service (FastAPI + uvicorn) with dynamic batching.

    >>> from tformer.serve import create_app, ServeLimits
    >>> app = create_app(tformer.Translator("opus-mt-fr-en"), ServeLimits(max_batch_size=32))
    $ tformer serve opus-mt-fr-en --port 8000
    $ curl -s localhost:8000/translate -H 'content-type: application/json' -d '{"texts": ["Le chat dort."]}'

FastAPI is imported on first use, so that `tformer info` runs without it.
"""

_EXPORTS = {"ServeLimits": "app", "TranslateRequest": "app", "create_app": "app",
            "DynamicBatcher": "batcher", "Overloaded": "batcher"}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
