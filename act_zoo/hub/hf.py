"""Hugging Face hub transport: files of a hub repository, kept in the hub's own cache.

``huggingface_hub`` already keys its cache by repo id + revision (content-addressed blobs,
locks, resume), so hub files are never copied into act_zoo's cache: :func:`hf_hub_file` only
maps its errors to act_zoo's (:class:`OfflineError` naming the snapshot path, ``DownloadError``).
"""

from __future__ import annotations

import re
from pathlib import Path

from .._version import __version__
from .cache import DownloadError, OfflineError, is_offline

__all__ = ["hf_hub_file", "parse_hf_spec"]

_HF_PREFIX = "hf-hub:"
_HF_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


def parse_hf_spec(spec: str) -> tuple[str, str | None]:
    """``"hf-hub:org/repo@rev"`` -> ``("org/repo", "rev")``; without ``@rev`` the revision is ``None``.

    Raises:
        ValueError: the prefix is missing or the repo id / revision is malformed.
    """
    if not isinstance(spec, str) or not spec[: len(_HF_PREFIX)].lower() == _HF_PREFIX:
        raise ValueError(f"expected 'hf-hub:<org>/<repo>[@<revision>]', got {spec!r}")
    body = spec[len(_HF_PREFIX) :].strip()
    repo_id, at, revision = body.partition("@")
    parts = repo_id.split("/")
    if (
        not repo_id
        or len(parts) > 2
        or len(repo_id) > 96
        or not all(_HF_NAME_RE.match(p) for p in parts)
        or any(".." in p or "--" in p for p in parts)
    ):
        raise ValueError(f"invalid Hugging Face repo id {repo_id!r} in {spec!r}")
    if at and (not revision or any(c.isspace() for c in revision)):
        raise ValueError(f"invalid revision {revision!r} in {spec!r}")
    return repo_id, (revision or None)


def hf_hub_file(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
) -> Path:
    """Path of ``filename`` from hub repo ``repo_id``, downloaded into the hub's own cache if needed.

    In offline mode (:func:`~act_zoo.hub.cache.is_offline`) only the local hub cache is used.

    Args:
        repo_id: ``"org/repo"``.
        filename: file path inside the repository.
        revision: branch, tag or commit (default: the hub's default branch).
        cache_dir: hub cache folder (default: the hub's, ``$HF_HUB_CACHE``).
        endpoint: hub endpoint or mirror (default: ``$HF_ENDPOINT`` / huggingface.co).

    Raises:
        OfflineError: offline and the file is not in the hub cache.
        DownloadError: repository, revision or file not found, gated repo, HTTP or network failure.
    """
    from huggingface_hub import constants, errors, hf_hub_download

    offline = is_offline()
    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            endpoint=endpoint,
            local_files_only=offline,
            library_name="act_zoo",
            library_version=__version__,
        )
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as exc:
        root = Path(cache_dir or constants.HF_HUB_CACHE)
        repo_folder = root / f"models--{repo_id.replace('/', '--')}"
        looked = repo_folder / "snapshots" / (revision or "<main>") / filename
        if offline or isinstance(exc, errors.OfflineModeIsEnabled):
            raise OfflineError.missing(
                f"Hugging Face hub file {where!r}",
                looked,
                reason=None if offline else "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE",
                fix=(
                    "unset ACT_ZOO_OFFLINE/HF_HUB_OFFLINE to allow downloading, or fetch it once while "
                    f"online, e.g. `hf download {repo_id} {filename}`"
                    + (f" --revision {revision}" if revision else "")
                ),
            ) from exc
        raise DownloadError(
            f"could not download {where!r} from the Hugging Face hub and it is not cached in {root} "
            f"(network unreachable?): {exc}"
        ) from exc
    except errors.GatedRepoError as exc:
        raise DownloadError(
            f"{repo_id!r} is a gated repository: accept its terms on the hub and log in (`hf auth login`)"
        ) from exc
    except errors.RepositoryNotFoundError as exc:
        raise DownloadError(
            f"Hugging Face repository {repo_id!r} not found (or private: log in with `hf auth login`)"
        ) from exc
    except errors.RevisionNotFoundError as exc:
        raise DownloadError(
            f"revision {revision!r} not found in Hugging Face repository {repo_id!r}"
        ) from exc
    except errors.EntryNotFoundError as exc:
        raise DownloadError(f"file {filename!r} not found in Hugging Face repository {repo_id!r}") from exc
    except errors.HfHubHTTPError as exc:
        raise DownloadError(f"Hugging Face hub request for {where!r} failed: {exc}") from exc
    return Path(path)
