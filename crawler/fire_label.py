"""Redis run labels: one per scheduled fire time, the same on every machine that fires the same cron.

With ``XUNJIAN_REDIS_URL`` set, the scheduler gives each crawl ``XUNJIAN_REDIS_RUN`` =
``<source>@<fire time>`` (see crawler.scheduler); a catch-up run after downtime takes the latest missed
fire time, and the next fire starts a new frontier.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from math import floor
from zoneinfo import ZoneInfo

from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger("xunjian.scheduler")

TZ = "Asia/Shanghai"  # the schedules' time zone (crawler.scheduler uses the same)

LABEL_LOOKBACKS = (3600.0, 86400.0)  # then the misfire grace


def last_fire_time(trigger, now: datetime, misfire_grace: float) -> datetime | None:
    """The trigger's latest fire time at or before ``now`` within ``misfire_grace`` seconds, else None."""
    if isinstance(trigger, IntervalTrigger):
        if trigger.start_date > now:
            return None
        steps = floor((now.timestamp() - trigger.start_date.timestamp()) / trigger.interval_length)
        fire = datetime.fromtimestamp(trigger.start_date.timestamp() + steps * trigger.interval_length,
                                      tz=trigger.timezone)
        return fire if fire <= now else fire - trigger.interval
    for seconds in sorted({*LABEL_LOOKBACKS, max(float(misfire_grace), 0.0)}):
        fire = trigger.get_next_fire_time(None, now - timedelta(seconds=seconds))
        if fire is None or fire > now:
            continue  # nothing in this window: look further back
        while True:
            following = trigger.get_next_fire_time(fire, now)
            if following is None or following > now:
                return fire
            fire = following
    return None


def run_label(name: str, trigger, now: datetime, misfire_grace: float) -> str:
    """``<source>@<fire time>``: the same on every machine that fires the same schedule."""
    fire = last_fire_time(trigger, now, misfire_grace) if trigger is not None else None
    if fire is None:  # not a scheduled fire (or one beyond the grace): a label of its own
        log.warning("来源 %s 找不到本次抓取对应的计划时间，Redis 运行标签改用当前时间", name)
        fire = now
    fire = fire.astimezone(ZoneInfo(TZ))
    stamp = fire.strftime("%Y%m%dT%H%M")
    if fire.second or fire.microsecond:
        stamp += fire.strftime("%S")
    if fire.microsecond:
        stamp += fire.strftime(".%f")
    return f"{name}@{stamp}{fire.strftime('%z')}"
