"""Listing a container's blobs with their metadata, fast enough for a million models an hour.

``trainer pack`` lists every model with its metadata, and the submitter lists each hour's aggregate blobs
(tens of thousands at a million pairs: one per shard and output batch) for their names, ETags and sizes. Through
the SDK (``ContainerClient.list_blobs(include=["metadata"])``) that costs about 0.9 ms of CPU per blob,
almost all of it in its generic XML model deserialiser (measured: 8.9 s for 10,000 models on one core,
so 15 minutes for a million), while the bytes on the wire are a few hundred per blob. This module sends
the same documented List Blobs request (``GET <container>?restype=container&comp=list&include=metadata``,
up to 5,000 blobs per page, continued with ``marker`` = the previous page's ``NextMarker`` until it is
empty: https://learn.microsoft.com/rest/api/storageservices/enumerating-blob-resources) through the
client's own pipeline, so authentication, retries and timeouts are the client's, and scans each page
for the four things it needs: a blob's ``Name`` (its first element), its ``Etag`` and ``Content-Length`` (in
``Properties``) and the ``Metadata`` elements. Scanning the bytes is 3.5x faster than ElementTree on these pages (7.6 vs
27 us per blob, measured on 5,000-blob pages of ~1.1 KB per blob); the response schema is documented and
flat, and the scanner handles its variants (escaped text, ``<Name Encoded="true">``, empty elements).

It relies on one private attribute, ``ContainerClient._pipeline`` (stable across azure-storage-blob
12.x); ``tests/workloads/test_blob_listing.py`` compares it with the SDK's own listing on Azurite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape  # every XML entity, numeric references included
from urllib.parse import quote, unquote

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.storage.blob import ContainerClient

PAGE_SIZE = 5000  # the service's maximum per List Blobs call


@dataclass(frozen=True, slots=True)
class ListedBlob:
    name: str
    etag: str
    metadata: dict[str, str]
    size: int = 0  # Content-Length


def _page(container: ContainerClient, prefix: str | None, marker: str) -> bytes:
    params = {"restype": "container", "comp": "list", "include": "metadata", "maxresults": str(PAGE_SIZE)}
    if prefix:
        params["prefix"] = prefix
    if marker:
        params["marker"] = marker
    # Percent-encoded by hand (%20, never '+'): Shared Key signing decodes the query with unquote.
    query = "&".join(f"{key}={quote(value, safe='')}" for key, value in params.items())
    request = HttpRequest("GET", f"{container.url}?{query}", headers={"x-ms-version": container.api_version})
    response = container._pipeline.run(request).http_response  # private: see the module docstring
    if response.status_code == 404:
        raise ResourceNotFoundError(response=response)
    if response.status_code != 200:
        raise HttpResponseError(response=response)
    return bytes(response.body())


_METADATA_ITEM = re.compile(rb"<([A-Za-z_][A-Za-z0-9_-]*)>([^<]*)</\1>|<([A-Za-z_][A-Za-z0-9_-]*)\s*/>")


def _text(chunk: bytes, tag: bytes) -> str:
    """The text of the first ``<tag ...>text</tag>`` (or ``<tag/>``) in ``chunk``, unescaped; "" if absent."""
    start = chunk.find(b"<" + tag)
    if start < 0:
        return ""
    opened = chunk.find(b">", start)
    if chunk[opened - 1 : opened] == b"/":  # <tag/>
        return ""
    end = chunk.find(b"</" + tag + b">", opened)
    text = unescape(chunk[opened + 1 : end].decode())
    return unquote(text) if b'Encoded="true"' in chunk[start:opened] else text


def parse_page(page: bytes) -> tuple[list[ListedBlob], str]:
    """The blobs of one List Blobs response and its ``NextMarker`` ("" on the last page)."""
    body, _, tail = page.rpartition(b"</Blobs>")
    blobs = []
    for chunk in body.split(b"<Blob>")[1:]:
        properties_end = chunk.find(b"</Properties>")
        metadata_start = chunk.find(b"<Metadata>", properties_end)
        metadata: dict[str, str] = {}
        if metadata_start >= 0:
            section = chunk[metadata_start + len(b"<Metadata>") : chunk.find(b"</Metadata>", metadata_start)]
            for item in _METADATA_ITEM.finditer(section):
                if item[1] is not None:
                    metadata[item[1].decode()] = unescape(item[2].decode())
                else:
                    metadata[item[3].decode()] = ""
        properties = chunk[:properties_end]
        size = int(_text(properties, b"Content-Length") or 0)
        blobs.append(ListedBlob(_text(chunk, b"Name"), _text(properties, b"Etag"), metadata, size))
    return blobs, _text(tail, b"NextMarker")


def list_blobs_with_metadata(container: ContainerClient, prefix: str | None = None) -> Iterator[ListedBlob]:
    """Every blob under ``prefix`` with its ETag and metadata, page by page, in name order."""
    marker = ""
    while True:
        blobs, marker = parse_page(_page(container, prefix, marker))
        yield from blobs
        if not marker:
            return
