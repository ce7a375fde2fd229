"""Model ids from the Hugging Face Hub: `resolve_model_dir` turns "Helsinki-NLP/opus-mt-fr-en"
into a local snapshot directory of the user's Hugging Face cache, downloading only the files
tformer reads. A local directory is returned untouched, without importing huggingface_hub
(an optional dependency: `pip install tformer[hub]`).

huggingface_hub itself honours HF_HOME / HF_HUB_CACHE (where the cache is), HF_TOKEN (private
and gated models) and HF_HUB_OFFLINE=1 (answer from the cache, no network)."""
from __future__ import annotations

import os
import re

# The files the loaders read (convert/huggingface.py, weights.py, generation_config.py,
# tokenizers.py); nothing else of a repository (tf_model.h5, flax_model.msgpack, onnx/, ...) is
# fetched. Patterns are matched against repository paths with fnmatch, where "*" also matches
# "/": none starts with a wildcard, so that a file in a subfolder (onnx/config.json) never matches.
CONFIG_FILES = ["config.json", "generation_config.json"]
TOKENIZER_FILES = [
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "source.spm", "target.spm", "vocab.json", "target_vocab.json",  # Marian
    "sentencepiece.bpe.model",  # M2M100
    "spiece.model",  # T5
]
SAFETENSORS_FILES = ["model.safetensors", "model.safetensors.index.json", "model-[0-9]*-of-[0-9]*.safetensors"]
PYTORCH_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-[0-9]*-of-[0-9]*.bin"]

# huggingface_hub's own rule for a repo id: "name" or "namespace/name", of [A-Za-z0-9_.-],
# not starting or ending with "." or "-", no "--" or "..", at most 96 characters.
_REPO_ID = re.compile(r"^(?:[\w][\w.-]*[\w]|\w)(?:/(?:[\w][\w.-]*[\w]|\w))?$", re.ASCII)


class ModelNotFoundError(FileNotFoundError):
    """Neither a local model directory nor a Hugging Face Hub model that could be fetched;
    the message says which and what to do. Subclasses say why the Hub could not answer."""


class HubNotInstalledError(ModelNotFoundError):
    """A Hub id was given but huggingface_hub is not installed (pip install tformer[hub])."""


class HubOfflineError(ModelNotFoundError):
    """The Hub cannot be reached (HF_HUB_OFFLINE=1 or no network) and the cache lacks the model."""


class HubRepoError(ModelNotFoundError):
    """The Hub answered: no such repository, a gated or private one, or no such revision."""


def allow_patterns(weights: str = "safetensors") -> list[str]:
    """The files snapshot_download fetches: config, tokenizer, and the weights in one format
    ("safetensors" or "pytorch": pytorch_model.bin, for repositories without safetensors)."""
    formats = {"safetensors": SAFETENSORS_FILES, "pytorch": PYTORCH_FILES}
    if weights not in formats:
        raise ValueError(f"weights must be 'safetensors' or 'pytorch', got {weights!r}")
    return CONFIG_FILES + TOKENIZER_FILES + formats[weights]


def looks_like_repo_id(name: str) -> bool:
    """Whether `name` can be a Hub model id ("org/name" or "name"); a path with more than one
    "/", an absolute path or one starting with "." or "~" cannot."""
    return len(name) <= 96 and "--" not in name and ".." not in name and bool(_REPO_ID.match(name))


def _has_weights(directory: str, patterns: list[str]) -> bool:
    import fnmatch

    names = os.listdir(directory)
    return any(fnmatch.fnmatch(n, p) for p in patterns for n in names)


def resolve_model_dir(name_or_path: str | os.PathLike[str], revision: str | None = None,
                      token: str | None = None) -> str:
    """A local directory for `name_or_path`: the directory itself when it exists (returned
    unchanged), else the snapshot of the Hugging Face Hub model of that id in the user's cache,
    downloaded when missing or stale (safetensors weights, else pytorch_model.bin).

    revision: a branch, tag or commit hash of the Hub repository (default "main"); only for ids.
    token: for private or gated models; None uses HF_TOKEN / the saved login.
    Raises ModelNotFoundError (a FileNotFoundError) or one of its subclasses, naming the problem."""
    path = os.fspath(name_or_path)
    if os.path.isdir(path):
        if revision is not None:
            raise ValueError(f"revision={revision!r} is for Hugging Face Hub ids, but {path} is a local directory")
        return path
    if not looks_like_repo_id(path):
        raise ModelNotFoundError(f"model directory not found: {path} (no such directory, and not a Hugging Face "
                                 "Hub model id of the form 'org/name')")
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise HubNotInstalledError(
            f"{path} is neither a local directory nor loadable as a Hugging Face Hub model id: "
            "huggingface_hub is not installed; install tformer[hub] (pip install huggingface_hub), "
            "or give the path of a model directory") from None
    directory = _download(path, revision, token, allow_patterns("safetensors"))
    if not _has_weights(directory, SAFETENSORS_FILES):
        directory = _download(path, revision, token, allow_patterns("pytorch"))
    return directory


def _cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _offline() -> bool:
    from huggingface_hub import constants

    is_offline = getattr(constants, "is_offline_mode", None)
    return is_offline() if is_offline is not None else bool(constants.HF_HUB_OFFLINE)


def _download(repo_id: str, revision: str | None, token: str | None, patterns: list[str]) -> str:
    from huggingface_hub import snapshot_download

    try:
        from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                            RevisionNotFoundError)
    except ImportError:  # huggingface_hub before 0.24 kept them in utils only
        from huggingface_hub.utils import (GatedRepoError, LocalEntryNotFoundError,  # type: ignore[attr-defined]
                                           RepositoryNotFoundError, RevisionNotFoundError)

    what = f"{repo_id} is not a local directory, and as a Hugging Face Hub model (revision {revision or 'main'!r})"
    try:
        return snapshot_download(repo_id, revision=revision, token=token, allow_patterns=patterns)
    except GatedRepoError:
        raise HubRepoError(f"{what} it is gated: accept its conditions on huggingface.co and set HF_TOKEN "
                           "(or log in with `hf auth login`)") from None
    except RevisionNotFoundError:
        raise HubRepoError(f"{what}: no such revision (give a branch, tag or commit hash of the repository)") from None
    except RepositoryNotFoundError:
        raise HubRepoError(f"{what}: no such repository on the Hub, or a private one (set HF_TOKEN); "
                           "check the id, or give the path of a model directory") from None
    except LocalEntryNotFoundError as e:
        if _offline():
            reason, fix = "HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE and download it once with network access"
        else:
            cause = str(e).splitlines()[0].removeprefix("Got: ") if str(e) else type(e).__name__
            reason, fix = f"the Hub could not be reached ({cause}; no network?)", "download it once with network access"
        raise HubOfflineError(f"{what}: {reason}, and the cache at {_cache_dir()} does not hold it (complete): "
                              f"{fix}, or give the path of a model directory") from None
