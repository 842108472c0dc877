"""Exporting leads for enforcement: lead lists (xlsx/csv/json) and a verifiable evidence package.

- ``rows``: which leads to export and everything about them, loaded in a few batched queries;
- ``writers``: the lead list as xlsx, csv (UTF-8 with BOM) or json;
- ``stable_zip``: zip files whose bytes depend only on their contents;
- ``package``: the evidence package (one folder per lead, manifest, package hash);
- ``verify``: re-checking a package against its manifest;
- ``run``: one export end to end, including moving confirmed leads to ``referred``.
"""
