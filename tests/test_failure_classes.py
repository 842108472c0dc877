"""The failure classes issue 13 found from outside, one behaviour each, through the shipped engine.

These texts are regression checks written for this file, not a measure of quality (that is the
frozen test split, tests/test_independent_quality.py): each pins one kind of behaviour that was
wrong before and must stay right.
"""

from __future__ import annotations

import pytest

from detectors import get_engine


def categories(text: str) -> set[str]:
    return set(get_engine().detect(text).categories)


@pytest.mark.parametrize("text", [
    "七年级数学提高班 周六下午上课",                      # grade + subject + class form + schedule
    "开办一年级语文数学补习，每周二四放学后",               # a one-line notice
    "四年级培优课程，下周开课，欢迎带孩子来校区免费测评",      # no phone, no price
])
def test_an_offer_without_contact_or_price_is_an_ad(text):
    assert "banned_ad" in categories(text)


@pytest.mark.parametrize("text", [
    "驾校包过班，科目二科目三一次拿证，报名请到总部前台",
    "成人高考协议班，包录取，不录取全额退费",
    "中考物理冲刺，保证涨30分，名额有限",
    "喜报！我校学员期末数学从68分提到115分，秋季班火热报名",
])
def test_exaggerated_marketing_outside_the_old_lexicon(text):
    assert "exaggerated_marketing" in categories(text)


@pytest.mark.parametrize("text", [
    "住家老师，负责接送和初中全科辅导，月薪2万，家政公司推荐",
    "暑期晚托班，放学后老师带孩子预习语数外新课，每月1500元",
    "原奥数班更名为思维创想营，五年级课程内容不变，老学员直接续费",
    "初二数学小班改在酒店会议室上课，熟人介绍，地点报名后发",
])
def test_disguised_tutoring_in_its_real_forms(text):
    assert {"disguised_tutoring", "banned_ad"} <= categories(text)


@pytest.mark.parametrize("text", [
    "國中數學補習班，暑假開課，歡迎諮詢",   # traditional forms
    "初二 S学 Y语 同步提高班，周末上课，私信报名",  # letter abbreviations
    "初 二 数 学 提 高 班 周 六 上 课 ， 报 名 私 信",  # spaced out one by one
])
def test_evasions_are_read_through(text):
    assert "banned_ad" in categories(text)


def test_plain_home_tutoring_is_banned_ad_not_a_disguise():
    got = categories("初三数学一对一上门辅导，周末可约，每小时200元，电话13800001111")
    assert "banned_ad" in got and "disguised_tutoring" not in got


@pytest.mark.parametrize("text", [
    "出闲置：人教版七年级数学课本和练习册一套，九成新，同城自提",
    "某大学2027年硕士研究生招生简章：报考条件、初试科目及复试安排详见附件，报名时间10月",
    "记者调查发现，一些机构打出保过、考不过就退钱的口号招揽学员，市场监管部门已介入",
    "您好，经核查，您反映的小区内托管班开展学科培训一事，区教育局已责令其停止，感谢您的监督。",
    "午托服务：接送、午餐、午休，只看护孩子写作业，不提供任何课程辅导，每月600元",
])
def test_things_that_only_sound_like_ads_stay_clean(text):
    assert categories(text) == set()
