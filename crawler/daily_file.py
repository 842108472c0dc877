"""The daily flagged list as a file: ``<data>/daily/巡查日报-YYYY-MM-DD.xlsx`` (Beijing date).

The leads are those of ``xunjian daily`` (leads with evidence that day, any review status, most serious
first), written with the export's xlsx writer.  The file is written to a temporary name and renamed, so
a reader never sees half a workbook; running the job again the same day replaces the file.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from storage.db import Database
from storage.errors import StorageError

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
DAILY_DIR = "daily"
FILE_PREFIX = "巡查日报"


def daily_path(data_dir: Path, day: date) -> Path:
    return Path(data_dir) / DAILY_DIR / f"{FILE_PREFIX}-{day.isoformat()}.xlsx"


def write_daily_list(db: Database, data_dir: Path, day: date | None = None) -> Path:
    """Write the day's list (default: today in Asia/Shanghai); returns the file written."""
    from storage.export.rows import load_rows, select_lead_ids
    from storage.export.writers import write_list

    day = day or datetime.now(LOCAL_TZ).date()
    rows = load_rows(db, select_lead_ids(db, status=None, day=day), data_dir)
    path = daily_path(data_dir, day)
    partial = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_list(rows, "xlsx", partial)
        os.replace(partial, path)
    except OSError as error:
        raise StorageError(f"无法写入当日线索清单 {path}（{error.strerror or error}）") from None
    finally:
        partial.unlink(missing_ok=True)
    return path
