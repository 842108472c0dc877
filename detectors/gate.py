"""The document gate: does this text sell something, to whom, and who is speaking?

The gate reads counts of its own lexicons (defined in ``rules/gate.yaml``) from the same scan the
rules use, plus the page title and URL.  News, policy, enforcement notices, consumer warnings,
parent questions, job ads, goods listings and schools' own 课后服务 pages are not promotional; for
them the engine reports no findings at all (domain §3.1, §5).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from urllib.parse import urlsplit

from .model import GateVerdict

# Lexicons the gate needs; the loader refuses a rule set that lacks one.
GATE_LEXICONS = (
    "g_contact", "g_price", "g_intent", "g_cta", "g_offer", "g_self", "g_report", "g_report_strong", "g_policy",
    "g_question", "g_charity",
    "g_job", "g_goods", "g_lesson", "g_school_service", "g_schedule", "g_teach", "g_claim", "g_promise",
    "aud_k12", "aud_preschool", "aud_minor", "aud_adult", "aud_adult_strong",
)


PRESENCE_ONLY = frozenset({"g_teach", "g_claim", "g_promise"})

# Cues of selling; inside quotation marks of a report they are the quoted ad, not the speaker's.
PROMO_LEXICONS = ("g_contact", "g_price", "g_intent", "g_cta", "g_offer", "g_self")
_QUOTED = re.compile(r'“[^”\n]{1,300}”|「[^」\n]{1,300}」|『[^』\n]{1,300}』|"[^"\n]{1,300}"')


def quoted_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _QUOTED.finditer(text)]


class Gate:
    def __init__(self, lexicon_ids: dict[str, int]):
        self.ids = lexicon_ids
        self._gate_ids = tuple((name, lexicon_ids[name]) for name in GATE_LEXICONS)

    def counts(self, found) -> dict[str, int]:
        count, has = found.count, found.has
        # what is taught and selling claims only count as present or not: ``has`` stops at the first
        # literal hit instead of running every regex and near-miss check of the lexicons they include
        return {name: (int(has(lid)) if name in PRESENCE_ONLY else count(lid)) for name, lid in self._gate_ids}

    def discount_quoted(self, found, counts: dict[str, int], spans: list[tuple[int, int]]) -> dict[str, int]:
        """Promotional cues inside quoted passages do not count (a report quoting an ad)."""
        starts = [a for a, _ in spans]
        out = dict(counts)
        for name in PROMO_LEXICONS:
            inside = 0
            for hit in found.get(self.ids[name]):
                k = bisect_right(starts, hit[0]) - 1
                if k >= 0 and hit[1] <= spans[k][1]:
                    inside += 1
            out[name] -= inside
        return out

    def evaluate(self, body: dict[str, int], title: dict[str, int] | None, url: str | None,
                 text_len: int) -> GateVerdict:
        c = dict(body)
        if title:
            for key, value in title.items():
                c[key] += 2 * value  # a title speaks for the whole page
        reasons: list[str] = []
        host_path = _url_parts(url)
        # Weighted cue counts, uncapped, so that long pages compare by density: a listing page of
        # twenty ads with one "谨防上当" footer stays an advert, a news report quoting one slogan
        # and a price stays a report.
        contact = c["g_contact"]
        promo = (2 * contact + 2 * c["g_price"] + c["g_intent"] + 2 * c["g_cta"] + c["g_offer"]
                 + c["g_self"])
        strong = c["g_report_strong"]
        report = 2 * strong + c["g_report"] + c["g_policy"]
        if host_path[0].endswith(".gov.cn") or host_path[0].endswith(".gov"):
            report += 4 + promo // 2
            reasons.append("政府网站")
        if any(seg in host_path[1] for seg in ("/news", "/xinwen", "/article/report")):
            report += 2
        audience = self._audience(c)
        # Offering a class is promotion too (graded, not a precondition): a class form, lessons, a
        # schedule, what is taught, a selling claim, a promised result (once more: only a seller promises
        # one) and an audience (pupils or exam takers) each add a point, so "七年级数学提高班 周六下午上课"
        # sells without a phone or a price.
        offer = ((c["g_offer"] > 0) + (c["g_lesson"] > 0) + (c["g_schedule"] > 0) + (c["g_teach"] > 0)
                 + (c["g_claim"] > 0) + (c["g_promise"] > 0)
                 + (c["aud_k12"] + c["aud_preschool"] + c["aud_minor"] + c["aud_adult"] + c["aud_adult_strong"] > 0))
        selling = promo  # the seller's own cues, without what any text about a class mentions
        promo += offer
        if promo < 2:
            return GateVerdict(False, audience, "content", ("未见招生、价格、联系方式等推广要素",))
        register = "advert"
        unreached = not contact and not c["g_cta"]  # nobody to call, nothing to click: who is selling?
        if ((report >= 4 and report >= selling - 2 * contact) or (strong and unreached)
                or (report >= 2 and unreached and report >= selling)):
            register = "policy" if c["g_policy"] > c["g_report"] + strong else "report"
        elif c["g_school_service"] >= 2 and (c["g_price"] == 0 or (c["g_school_service"] >= 4 and not contact)):
            register = "school"
        elif (c["g_question"] and not contact and c["g_cta"] == 0 and not c["g_price"] and text_len < 400
              and not c["g_self"] and (c["g_schedule"] == 0 or c["g_question"] >= 2)):
            register = "question"
        elif c["g_job"] >= 2 and c["g_job"] >= c["g_cta"] + c["g_intent"]:
            register = "job"
        elif (c["g_goods"] >= 2 and c["g_goods"] > c["g_lesson"] + c["g_offer"] + c["g_schedule"] + c["g_intent"]
              and not c["g_claim"] and text_len < 600):
            register = "goods"
        elif c["g_charity"] >= 2 and c["g_price"] == 0 and c["g_charity"] >= 2 * contact + 1:
            register = "charity"
        if register != "advert":
            labels = {"policy": "政策/公文语体", "report": "新闻报道/执法通报/消费提示语体",
                      "school": "学校自办课后服务", "question": "家长提问", "job": "招聘启事",
                      "goods": "商品销售，未提供课程", "charity": "公益或志愿活动，不收费"}
            return GateVerdict(False, audience, register, tuple(reasons) + (labels[register],))
        reasons.append(f"推广要素 {promo} 分")
        return GateVerdict(True, audience, register, tuple(reasons))

    @staticmethod
    def _audience(c: dict[str, int]) -> tuple[str, ...]:
        out = []
        adult = c["aud_adult"] + 3 * c["aud_adult_strong"]
        if c["aud_k12"] and c["aud_k12"] >= adult:
            out.append("k12")
        if c["aud_preschool"]:
            out.append("preschool")
        if out or (c["aud_minor"] and c["aud_minor"] > adult):
            out.append("minor")
        if adult and adult >= c["aud_k12"]:
            out.append("adult")
        else:
            out.append("not_adult")
        return tuple(out)


def _url_parts(url: str | None) -> tuple[str, str]:
    if not url:
        return "", ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", ""
    return (parts.hostname or "").lower(), (parts.path or "").lower()
