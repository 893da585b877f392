"""The fast listing against the SDK's own, on real Azurite: same blobs, ETags and metadata, across pages."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from workloads.common import blob_listing
from workloads.common.blob_listing import list_blobs_with_metadata


def test_the_fast_listing_equals_the_sdks_across_pages(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = service.get_container_client("models")
    for i in range(23):
        metadata = {"sha256": f"{i:064x}", "format": "skops", "Name": "a<b & 'c'"} if i % 3 else {}
        container.upload_blob(f"dev-{i:02d}/temp & co/model.skops", b"x" * i, metadata=metadata)
    monkeypatch.setattr(blob_listing, "PAGE_SIZE", 5)  # five pages: the markers are followed
    mine = [(b.name, b.etag, b.size, b.metadata) for b in list_blobs_with_metadata(container)]
    sdk = [
        (b.name, str(b.etag), int(b.size), dict(b.metadata or {})) for b in container.list_blobs(include=["metadata"])
    ]
    assert mine == sdk and len(mine) == 23
    assert [b.name for b in list_blobs_with_metadata(container, prefix="dev-1")] == [
        f"dev-{i}/temp & co/model.skops" for i in range(10, 20)
    ]


def test_a_missing_container_is_an_error_not_an_empty_listing(service: BlobServiceClient) -> None:
    with pytest.raises(ResourceNotFoundError):
        list(list_blobs_with_metadata(service.get_container_client("no-such-container")))


def test_a_page_is_scanned_like_an_xml_parser_would_read_it() -> None:
    page = (
        b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="models"><Blobs>'
        b"<Blob><Name>a&amp;b/x/model.skops</Name><Properties><Etag>0x1</Etag></Properties>"
        b"<Metadata><Name>not the blob&apos;s name</Name><sha256>&#x61;bc</sha256><empty /></Metadata></Blob>"
        b'<Blob><Name Encoded="true">dev%20%EF%BF%BE/x/model.skops</Name><Properties><Etag>"0x2"</Etag>'
        b"</Properties></Blob>"
        b"</Blobs><NextMarker>2!96!MDAw&amp;</NextMarker></EnumerationResults>"
    )
    blobs, marker = blob_listing.parse_page(page)
    assert [(b.name, b.etag, b.metadata) for b in blobs] == [
        ("a&b/x/model.skops", "0x1", {"Name": "not the blob's name", "sha256": "abc", "empty": ""}),
        ("dev \ufffe/x/model.skops", '"0x2"', {}),
    ]
    assert marker == "2!96!MDAw&"
    assert blob_listing.parse_page(b"<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>") == ([], "")
