"""One fetched page as a WARC 1.1 file: warcinfo, request/response pairs and a metadata record.

The first request/response pair is what the crawler fetched: the status code, the headers and the
body bytes exactly as Scrapy handed them to the spider (for pages rendered through scrapy-playwright,
the body is the document after its scripts ran). The screenshot is taken from that same document,
handed to chromium from memory; the subresources chromium was allowed to load for it (images, CSS,
fonts), fetched by the crawler's downloader, follow as further pairs, so that the archive replays the
page as it was shown. A metadata record says which is which.

Stored headers must describe the stored body, or WARC readers mis-decode it. HTTP clients undo
chunked transfer coding, and the browser also undoes Content-Encoding, so such headers, and a
Content-Length that no longer matches, are kept under the prefix ``X-Xunjian-Orig-`` instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from io import BytesIO
from urllib.parse import urlsplit

from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

WARC_MEDIA_TYPE = "application/warc"
WARC_EXT = "warc"
ORIG_PREFIX = "X-Xunjian-Orig-"
WARC_SPEC = "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"


@dataclass
class HttpExchange:
    url: str  # final URL (after redirects): the URL of this request/response pair
    requested_url: str
    method: str
    protocol: str  # HTTP/1.0 or HTTP/1.1
    request_headers: list[tuple[str, str]]
    status: int
    response_headers: list[tuple[str, str]]
    body: bytes
    fetched_at: datetime  # aware
    ip_address: str | None = None
    rendered: bool = False  # body is a browser-rendered document, not network bytes
    decoded_content: bool = False  # body had its Content-Encoding removed but the header was kept
    extra: dict[str, str] = field(default_factory=dict)  # more fields for the metadata record


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def stored_headers(exchange: HttpExchange) -> list[tuple[str, str]]:
    """Response headers with those that no longer describe the stored body renamed (see module doc)."""
    out = []
    for name, value in exchange.response_headers:
        lower = name.lower()
        stale = (
            lower == "transfer-encoding"
            or (lower == "content-encoding" and exchange.decoded_content and value.strip().lower() != "identity")
            or (lower == "content-length" and value.strip() != str(len(exchange.body)))
        )
        out.append((ORIG_PREFIX + name if stale else name, value))
    return out


def _request_target(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return target, parts.netloc


def _warc_date(moment: datetime) -> str:
    naive_utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return datetime_to_iso_date(naive_utc, use_micros=True)


def _fields(pairs: list[tuple[str, str]]) -> bytes:
    lines = [f"{name}: {' '.join(str(value).split())}" for name, value in pairs]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _write_pair(writer: WARCWriter, exchange: HttpExchange, info_id: str) -> str:
    """Write a request and its response record; returns the response's WARC-Record-ID."""
    common = {"WARC-Date": _warc_date(exchange.fetched_at), "WARC-Warcinfo-ID": info_id}
    if exchange.ip_address:
        common["WARC-IP-Address"] = exchange.ip_address
    target, host = _request_target(exchange.url)
    request_headers = list(exchange.request_headers)
    if not any(name.lower() == "host" for name, _ in request_headers):
        request_headers.insert(0, ("Host", host))
    request = writer.create_warc_record(
        exchange.url, "request", payload=BytesIO(b""), length=0,
        http_headers=StatusAndHeaders(f"{exchange.method} {target} {exchange.protocol}", request_headers,
                                      is_http_request=True),
        warc_headers_dict=dict(common),
    )
    status_line = f"{exchange.status} {reason_phrase(exchange.status)}".strip()
    response = writer.create_warc_record(
        exchange.url, "response", payload=BytesIO(exchange.body), length=len(exchange.body),
        http_headers=StatusAndHeaders(status_line, stored_headers(exchange), protocol=exchange.protocol),
        warc_headers_dict=dict(common),
    )
    response_id = response.rec_headers.get_header("WARC-Record-ID")
    request.rec_headers.add_header("WARC-Concurrent-To", response_id)
    writer.write_record(request)
    writer.write_record(response)
    return response_id


def metadata_fields(crawl: HttpExchange, notes: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    pairs = [
        ("requested-url", crawl.requested_url),
        ("final-url", crawl.url),
        ("rendered", "true" if crawl.rendered else "false"),
        ("crawl-body", "document after rendering by headless chromium (scrapy-playwright)" if crawl.rendered
         else "response body as received by Scrapy (transfer coding and removed content codings decoded)"),
        ("crawl-body-sha256", hashlib.sha256(crawl.body).hexdigest()),
    ]
    pairs.extend(crawl.extra.items())
    pairs.extend(notes)
    return pairs


def warc_bytes(crawl: HttpExchange, software: str, resources: Sequence[HttpExchange] = (),
               notes: Sequence[tuple[str, str]] = ()) -> bytes:
    """A complete WARC 1.1 file (uncompressed) for one crawled page, the subresources fetched for its
    screenshot, and ``notes`` (more metadata fields, e.g. about the screenshot)."""
    buffer = BytesIO()
    writer = WARCWriter(buffer, gzip=False, warc_version="1.1")
    info = writer.create_warcinfo_record(
        "", {"software": software, "format": "WARC File Format 1.1", "conformsTo": WARC_SPEC}
    )
    info.rec_headers.replace_header("WARC-Date", _warc_date(crawl.fetched_at))
    writer.write_record(info)
    info_id = info.rec_headers.get_header("WARC-Record-ID")

    response_id = _write_pair(writer, crawl, info_id)
    for resource in resources:
        _write_pair(writer, resource, info_id)

    payload = _fields(metadata_fields(crawl, notes))
    metadata = writer.create_warc_record(
        crawl.url, "metadata", payload=BytesIO(payload), length=len(payload),
        warc_content_type="application/warc-fields",
        warc_headers_dict={"WARC-Date": _warc_date(crawl.fetched_at), "WARC-Warcinfo-ID": info_id,
                           "WARC-Refers-To": response_id},
    )
    writer.write_record(metadata)
    return buffer.getvalue()
