"""Download weight files into the act_zoo cache: one import for the three transports.

* :func:`download_url` (:mod:`act_zoo.hub.http_fetch`): any ``http://`` / ``https://`` URL;
* :func:`download_gdrive` (:mod:`act_zoo.hub.gdrive`): a Google Drive file id or share link;
* :func:`hf_hub_file` (:mod:`act_zoo.hub.hf`): a file of a Hugging Face hub repository.

The first two share one cache layer (:mod:`act_zoo.hub.cache`); hub files stay in the hub's cache.
"""

from __future__ import annotations

from .cache import ChecksumError, DownloadError, OfflineError, sha256_file
from .gdrive import GDRIVE_URL, download_gdrive, parse_gdrive_id
from .hf import hf_hub_file, parse_hf_spec
from .http_fetch import download_url, max_download_bytes

__all__ = [
    "GDRIVE_URL",
    "ChecksumError",
    "DownloadError",
    "OfflineError",
    "download_gdrive",
    "download_url",
    "hf_hub_file",
    "max_download_bytes",
    "parse_gdrive_id",
    "parse_hf_spec",
    "sha256_file",
]
