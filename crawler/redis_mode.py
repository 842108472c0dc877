"""Scale-out: one shared frontier in Redis for crawl processes on one or several machines.

When ``XUNJIAN_REDIS_URL`` is set, :func:`redis_overlay` swaps Scrapy's scheduler for scrapy-redis's
(request queue and duplicate filter in Redis, ``SCHEDULER_PERSIST`` on), so every process crawling a
source pops from and pushes to the same queue and no URL is fetched twice. Leads go to the shared
database given with ``--db`` (PostgreSQL when several machines take part).

The subclasses below adapt scrapy-redis 0.9 to xunjian without patching the library:

* keys are per *source* (``xunjian:[RUN:]SOURCE:requests`` / ``:dupefilter`` / ``:workers`` / ``:done``),
  not per spider name, because several sources share one spider class;
* start URLs always pass through the shared duplicate filter, so only the first process seeds them;
* a process that runs out of work closes only when the frontier is exhausted everywhere: the queue is
  empty and no other live worker is busy (each worker keeps a heartbeat in ``:workers``; entries
  older than ``XUNJIAN_REDIS_STALE`` seconds, e.g. from a killed process, are ignored);
* a worker with nothing to do while a peer is still busy asks Redis for work every
  ``XUNJIAN_REDIS_IDLE_POLL`` seconds (default 0.5) and hands what it finds to its engine with
  ``engine.crawl()``; left alone, Scrapy would look at the scheduler again only at its next idle check,
  5 s later, so a worker joining an empty queue (or finding it drained for a moment) sat out 5 s; the
  same poll closes the worker as soon as the frontier is exhausted everywhere (queue empty, no busy
  peer) instead of at that next idle check;
* the last worker to finish clears the queue and the duplicate filter so the next run starts afresh;
  with a run label (``XUNJIAN_REDIS_RUN``, e.g. the scheduled fire time) it also leaves a ``:done``
  marker, and a process joining that run later closes at once (reason ``redis_frontier_done``).

A run that stops early (signal, page or time limit) keeps queue and filter, and the next run with the
same label resumes the frontier (crawl_job reuses the label of the JOBDIR it resumes). The queue,
filter and worker keys of a labelled run expire after ``XUNJIAN_REDIS_KEY_TTL`` seconds (default 7
days, 0 = never), refreshed by every heartbeat, so a frontier nobody comes back to does not stay in
Redis forever. Requests a process had popped but not finished when it was killed
with SIGKILL are lost for that run (they are already in the duplicate filter).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from typing import Any

from redis.exceptions import RedisError
from scrapy import signals
from scrapy.exceptions import CloseSpider, DontCloseSpider
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.misc import load_object
from scrapy_redis import connection
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.scheduler import Scheduler

from crawler.health import FRONTIER_DONE

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
IDLE_POLL_SECONDS = 0.5  # how often an idle worker asks the shared queue for work
DONE_MARKER_TTL = 7 * 24 * 3600
KEY_TTL = 7 * 24 * 3600  # default lifetime of a labelled run's queue, filter and workers keys


class RedisSetupError(RuntimeError):
    """Redis mode cannot start (bad setting, unreachable server); ``str()`` is one line for the inspector."""


class RedisUnavailable(RedisSetupError):
    """The shared frontier's Redis server cannot be reached."""


def redis_overlay(url: str | None, run: str | None = None) -> dict[str, Any]:
    """Settings that switch a crawl to the shared Redis frontier; empty when ``url`` is empty."""
    if not url:
        return {}
    return {
        "XUNJIAN_REDIS_URL": url,
        "XUNJIAN_REDIS_RUN": run if run is not None else os.environ.get("XUNJIAN_REDIS_RUN", ""),
        "XUNJIAN_REDIS_STALE": float(os.environ.get("XUNJIAN_REDIS_STALE", "60")),
        "XUNJIAN_REDIS_IDLE_POLL": os.environ.get("XUNJIAN_REDIS_IDLE_POLL", "").strip() or IDLE_POLL_SECONDS,
        "XUNJIAN_REDIS_KEY_TTL": os.environ.get("XUNJIAN_REDIS_KEY_TTL", "").strip() or KEY_TTL,
        "REDIS_URL": url,
        "SCHEDULER": "crawler.redis_mode.SharedFrontierScheduler",
        "DUPEFILTER_CLASS": "crawler.redis_mode.SourceDupeFilter",
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",
        "SCHEDULER_PERSIST": True,
        "SCHEDULER_FLUSH_ON_START": False,
        "SCHEDULER_IDLE_BEFORE_CLOSE": 0,
    }


def apply_redis_mode(settings, url: str | None = None) -> bool:
    """Apply the overlay to a ``scrapy.settings.Settings`` (``url`` defaults to ``$XUNJIAN_REDIS_URL``)."""
    overlay = redis_overlay(url if url is not None else os.environ.get("XUNJIAN_REDIS_URL", ""))
    for key, value in overlay.items():
        settings.set(key, value, priority="project")
    return bool(overlay)


def check_redis(settings) -> None:
    """Raise RedisSetupError (one line) when the overlay is on and a setting is invalid or its Redis
    does not answer."""
    if settings.get("SCHEDULER") != "crawler.redis_mode.SharedFrontierScheduler":
        return
    try:
        _key_ttl(settings)
        _idle_poll(settings.get("XUNJIAN_REDIS_IDLE_POLL", IDLE_POLL_SECONDS))
    except ValueError as exc:
        raise RedisSetupError(str(exc)) from exc
    server = connection.from_settings(settings)
    try:
        server.ping()
    except RedisError as exc:
        raise RedisUnavailable(f"无法连接 Redis（XUNJIAN_REDIS_URL={settings.get('REDIS_URL')}）：{exc}") from exc
    finally:
        server.close()


def _key_ttl(settings) -> int:
    raw = settings.get("XUNJIAN_REDIS_KEY_TTL", KEY_TTL)
    try:
        value = int(float(raw))
    except (TypeError, ValueError):
        value = -1
    if value < 0:
        raise ValueError(f"环境变量 XUNJIAN_REDIS_KEY_TTL 应为非负的秒数，实际为 {raw!r}")
    return value


def _idle_poll(raw) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = 0.0
    if not value > 0:
        raise ValueError(f"环境变量 XUNJIAN_REDIS_IDLE_POLL 应为正的秒数，实际为 {raw!r}")
    return value


def key_prefix(settings, spider) -> str:
    source = getattr(getattr(spider, "source", None), "name", None) or spider.name
    run = settings.get("XUNJIAN_REDIS_RUN") or ""
    return f"xunjian:{run}:{source}" if run else f"xunjian:{source}"


class SourceDupeFilter(RFPDupeFilter):
    """scrapy-redis's filter keyed by source; never deleted by Scrapy when one process closes."""

    @classmethod
    def from_spider(cls, spider):
        settings = spider.settings
        server = connection.from_settings(settings)
        key = f"{key_prefix(settings, spider)}:dupefilter"
        return cls(server, key=key, debug=settings.getbool("DUPEFILTER_DEBUG"))

    def close(self, reason=""):
        """The shared filter outlives this process; the last worker clears it (see the scheduler)."""


class SharedFrontierScheduler(Scheduler):
    """scrapy-redis's scheduler with per-source keys, one-time seeding and cluster-wide idle close."""

    def __init__(self, server, *args, stale_after: float = 60.0, key_ttl: int = 0,
                 idle_poll: float = IDLE_POLL_SECONDS, **kwargs):
        super().__init__(server, *args, **kwargs)
        self.stale_after = stale_after
        self.key_ttl = key_ttl  # seconds; applied only to a labelled run's keys
        self.idle_poll = idle_poll
        self._poll = None  # LoopingCall asking Redis for work while idle
        self._handing = None  # the request being handed to the engine by the idle poll
        self._local: deque = deque()  # requests taken from Redis by the idle poll, not yet downloading
        self.labelled = False
        self.worker_id = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.busy = True
        self.done_before_start = False
        self.crawler = None
        self._heartbeat = None

    @classmethod
    def from_settings(cls, settings):
        check_redis(settings)
        server = connection.from_settings(settings)
        serializer = settings.get("SCHEDULER_SERIALIZER")
        if isinstance(serializer, str):
            import importlib

            serializer = importlib.import_module(serializer)
        return cls(
            server=server,
            persist=True,
            flush_on_start=settings.getbool("SCHEDULER_FLUSH_ON_START"),
            queue_cls=settings.get("SCHEDULER_QUEUE_CLASS") or "scrapy_redis.queue.PriorityQueue",
            dupefilter_cls=settings.get("DUPEFILTER_CLASS") or "crawler.redis_mode.SourceDupeFilter",
            idle_before_close=settings.getint("SCHEDULER_IDLE_BEFORE_CLOSE"),
            serializer=serializer,
            stale_after=settings.getfloat("XUNJIAN_REDIS_STALE", 60.0),
            key_ttl=_key_ttl(settings),
            idle_poll=_idle_poll(settings.get("XUNJIAN_REDIS_IDLE_POLL", IDLE_POLL_SECONDS)),
        )

    @classmethod
    def from_crawler(cls, crawler):
        instance = cls.from_settings(crawler.settings)
        instance.stats = crawler.stats
        instance.crawler = crawler
        crawler.signals.connect(instance.on_idle, signal=signals.spider_idle)
        return instance

    # --- lifecycle ------------------------------------------------------------------------
    def open(self, spider):
        self.spider = spider
        prefix = key_prefix(spider.settings, spider)
        self.workers_key = f"{prefix}:workers"
        self.done_key = f"{prefix}:done"
        self.queue_key = f"{prefix}:requests"
        self.queue = load_object(self.queue_cls)(
            server=self.server, spider=spider, key=self.queue_key, serializer=self.serializer
        )
        self.df = load_object(self.dupefilter_cls).from_spider(spider)
        self.labelled = bool(spider.settings.get("XUNJIAN_REDIS_RUN"))
        if self.flush_on_start:
            self.flush()
        self.done_before_start = bool(self.server.exists(self.done_key))
        self._prune_stale()
        self._beat()
        if self.crawler is not None:
            from twisted.internet import task

            self._heartbeat = task.LoopingCall(self._beat)
            self._heartbeat.start(HEARTBEAT_SECONDS, now=False)
        pending = len(self.queue)
        if pending:
            spider.log(f"Joining shared frontier {prefix} ({pending} requests queued)")

    def close(self, reason):
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._stop_polling()
        while self._local:  # taken from the shared queue but never started: give them back
            self.queue.push(self._local.popleft())
        self.server.hdel(self.workers_key, self.worker_id)
        self._refresh_expiry()  # keys created since the last heartbeat get their expiry too
        # Idle peers are closing too; a busy one may still add work, so it finishes the frontier later.
        if reason == "finished" and not self._live_peers(busy_only=True) and not len(self.queue):
            self._finish_frontier()

    def _finish_frontier(self) -> None:
        """Last worker out: clear the frontier so the next run starts afresh; mark a labelled run done."""
        pipe = self.server.pipeline()
        pipe.delete(self.queue_key, self.df.key, self.workers_key)
        if self.spider.settings.get("XUNJIAN_REDIS_RUN"):
            pipe.set(self.done_key, str(int(time.time())), ex=DONE_MARKER_TTL)
        pipe.execute()
        logger.info("shared frontier finished: %s", self.queue_key.rsplit(":", 1)[0])

    # --- requests -------------------------------------------------------------------------
    def enqueue_request(self, request):
        if request is self._handing:  # from the idle poll: already taken from the shared queue
            self._handing = None
            self._local.append(request)
            return True
        if self.done_before_start:
            return False
        # Start URLs go through the shared filter even when marked dont_filter: seeded once per run.
        check = request.meta.get("xunjian_start") or not request.dont_filter
        if check and self.df.request_seen(request):
            self.df.log(request, self.spider)
            return False
        if self.stats:
            self.stats.inc_value("scheduler/enqueued/redis")
        self.queue.push(request)
        return True

    def next_request(self):
        if self._local:
            return self._local.popleft()  # counted as dequeued when the poll took it
        return self._take()

    def _take(self):
        """Pop a request from the shared queue, having said "busy" first when idle.

        A peer decides the frontier is finished when the queue is empty and nobody is busy; were the
        heartbeat written after the pop, a peer looking in between would see neither the request nor
        its taker, and close the frontier (clearing the duplicate filter) under a worker still at work.
        """
        if not self.busy:
            if not len(self.queue):
                return None
            self._set_busy(True)
        request = self.queue.pop(self.idle_before_close)
        if request is not None and self.stats:
            self.stats.inc_value("scheduler/dequeued/redis")
        return request

    def _set_busy(self, busy: bool) -> None:
        if self.busy != busy:
            self.busy = busy
            self._beat()

    def __len__(self):
        return len(self._local) + len(self.queue)

    # --- asking for work while idle --------------------------------------------------------
    def _start_polling(self) -> None:
        if self.crawler is None or (self._poll is not None and self._poll.running):
            return
        from twisted.internet import task

        self._poll = task.LoopingCall(self._poll_once)
        self._poll.start(self.idle_poll, now=False).addErrback(
            lambda failure: logger.error("idle poll of the shared queue failed: %s", failure.getErrorMessage()))

    def _stop_polling(self) -> None:
        if self._poll is not None and self._poll.running:
            self._poll.stop()

    def _poll_once(self) -> None:
        engine = getattr(self.crawler, "engine", None)
        if engine is None or not engine.running or engine.spider is None:
            self._stop_polling()
            return
        request = self._take()
        if request is None:
            self._set_busy(False)  # a peer took what was there
            if not len(self) and not self._live_peers(busy_only=True) and engine.spider_is_idle() \
                    and not getattr(engine, "_start_error", False):
                # The frontier is exhausted everywhere: close now, as the idle check would in up to 5 s
                # (a failed start() is left to that check, which names it).
                self._stop_polling()
                deferred_from_coro(engine.close_spider_async(reason="finished")).addErrback(
                    lambda failure: logger.error("closing after the shared frontier finished failed: %s",
                                                 failure.getErrorMessage()))
            return
        self._stop_polling()  # busy again: the engine asks the scheduler itself until the next idle
        if self.stats:
            self.stats.inc_value("xunjian/redis/idle_pickups")
        self._handing = request
        try:
            engine.crawl(request)  # schedules it through enqueue_request and wakes the engine up
        finally:
            if self._handing is request:  # never reached the scheduler: back to the shared queue
                self._handing = None
                self.queue.push(request)

    # --- cluster-wide idle detection -------------------------------------------------------
    def _beat(self) -> None:
        state = "busy" if self.busy else "idle"
        self.server.hset(self.workers_key, self.worker_id, f"{state}:{time.time():.3f}")
        self._refresh_expiry()

    def _refresh_expiry(self) -> None:
        """A labelled run's frontier lives ``key_ttl`` seconds past the last sign of life of any worker."""
        if not (self.labelled and self.key_ttl):
            return
        pipe = self.server.pipeline()
        for key in (self.queue_key, self.df.key, self.workers_key):
            pipe.expire(key, self.key_ttl)
        pipe.execute()

    def _entries(self) -> dict[str, tuple[str, float]]:
        entries = {}
        for worker, value in self.server.hgetall(self.workers_key).items():
            worker = worker.decode() if isinstance(worker, bytes) else worker
            value = value.decode() if isinstance(value, bytes) else value
            state, _, stamp = value.partition(":")
            try:
                entries[worker] = (state, float(stamp))
            except ValueError:
                entries[worker] = (state, 0.0)
        return entries

    def _prune_stale(self) -> None:
        now = time.time()
        stale = [w for w, (_, ts) in self._entries().items() if now - ts > self.stale_after]
        if stale:
            self.server.hdel(self.workers_key, *stale)

    def _live_peers(self, busy_only: bool = False) -> list[str]:
        now = time.time()
        return [
            w for w, (state, ts) in self._entries().items()
            if w != self.worker_id and now - ts <= self.stale_after and (not busy_only or state == "busy")
        ]

    def on_idle(self, spider):
        """spider_idle: stay open while the shared queue has work or a live peer may still add some."""
        if self.done_before_start:
            raise CloseSpider(FRONTIER_DONE)
        self._set_busy(False)
        if len(self) or self._live_peers(busy_only=True):
            self._start_polling()
            raise DontCloseSpider
        self._stop_polling()
