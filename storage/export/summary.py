"""The human-readable texts of an evidence package (Simplified Chinese): per-lead 摘要.txt and 说明.txt.

They hold no export time, so the same export twice gives the same bytes.
"""

from __future__ import annotations

from storage.export.rows import LeadRow, category_name
from storage.export.writers import local_text, other_ids
from storage.identifiers import KIND_NAMES
from storage.workflow import status_name

EVIDENCE_LABELS = {"warc": "网页存档（WARC）", "screenshot": "网页截图", "text": "提取文本"}
SELECTION_STATUS_ALL = "全部状态"


def _join(values: list[str], empty: str = "未发现") -> str:
    return "、".join(values) if values else empty


def lead_summary(row: LeadRow, evidence_paths: dict[tuple[int, str], str], wacz_path: str | None) -> str:
    """Who, what, where, when, why and on which legal basis, with every evidence file's hash."""
    lines = [
        f"线索编号：{row.id}",
        f"机构名称：{row.name or '（未识别）'}",
        f"处理状态（导出时）：{status_name(row.status)}",
        f"违规类型：{_join([category_name(c) for c in row.categories], '无')}",
        f"严重程度：{row.severity}（5 为最严重）　评分：{row.score:.2f}",
        f"首次发现：{local_text(row.first_seen)}（北京时间）",
        f"最近发现：{local_text(row.last_seen)}（北京时间）",
        "",
        "【广告主联系方式与标识】",
        f"联系电话：{_join(row.ids('phone'))}",
        f"微信：{_join(row.ids('wechat'))}",
        f"地址：{_join(row.ids('address'))}",
    ]
    for kind, values in other_ids(row).items():
        lines.append(f"{KIND_NAMES.get(kind, kind)}：{_join(values)}")
    names = [n for n in row.ids("name") if n != row.name]
    if names:
        lines.append(f"其他名称写法：{_join(names)}")
    lines += ["", f"【涉及网页】（{len(row.urls)} 个）"]
    lines += [f"- {url}" for url in row.urls]
    lines += ["", f"【违规内容】（{row.finding_count} 条）"]
    for number, f in enumerate(row.findings, 1):
        lines += [
            f"{number}. {category_name(f.category)}　严重程度 {f.severity}　规则 {f.rule}",
            f"   网址：{f.url}",
            f"   抓取时间：{local_text(f.fetched_at)}（北京时间）",
            f"   违规原文：“{f.text}”",
            f"   上下文：…{f.before}【{f.text}】{f.after}…".replace("\n", " "),
            f"   判定说明：{f.explanation}",
            f"   法律依据：{f.basis or '（未注明）'}",
        ]
    lines += ["", "【证据文件】（SHA-256 为文件内容哈希，采集时间为北京时间）"]
    evidence = row.evidence
    if not evidence:
        lines.append("（本线索没有存档文件；违规原文与上下文见 findings.json）")
    for item in evidence:
        path = evidence_paths.get((item.snapshot_id, item.kind), "")
        lines += [
            f"- {EVIDENCE_LABELS.get(item.kind, item.kind)}：{path}",
            f"  SHA-256：{item.sha256}",
            f"  采集时间：{local_text(item.captured_at)}　大小：{item.size} 字节",
        ]
    if wacz_path:
        lines.append(f"- 网页存档合集（WACZ，可用 ReplayWeb.page 打开回放）：{wacz_path}")
    lines += ["", f"规则包版本：{_join(row.rules_versions, '未知')}", ""]
    return "\n".join(lines)


def package_readme(rows: list[LeadRow], selection: dict[str, str | None], generator: str) -> str:
    status = selection.get("status") or "all"
    lines = [
        "巡检（xunjian）线索证据包",
        "",
        f"线索数量：{len(rows)}",
        f"选择条件：状态 {SELECTION_STATUS_ALL if status == 'all' else status_name(status)}"
        + (f"，日期 {selection['date']}（北京时间）" if selection.get("date") else ""),
        f"生成程序：{generator}",
        "",
        "目录结构：",
        "- 线索清单.json：全部线索及其违规发现（英文字段名）；",
        "- 线索-<编号>-<机构名称>/：每条线索一个目录，内含 摘要.txt（人工阅读）、findings.json（机器读取）、",
        "  快照-<编号>/ 下的网页存档（.warc）、网页截图（.png）、提取文本（.txt），以及可回放的 .wacz 合集；",
        "- manifest.json 与 manifest-sha256.txt：除自身外每个文件的 SHA-256；",
        "- package-sha256.txt：manifest-sha256.txt 的 SHA-256，即“包哈希”。",
        "",
        "校验方法：",
        "1. 运行 xunjian verify <证据包.zip>，逐一核对每个文件的哈希，并指出被修改、增加或删除的文件；",
        "2. 或解压后在本目录运行 sha256sum -c manifest-sha256.txt 与 sha256sum -c package-sha256.txt；",
        "3. 包哈希应与导出时命令输出、以及线索审计记录中登记的包哈希一致。",
        "",
        "线索列表：",
    ]
    lines += [f"- {row.id}　{row.name or '（未识别）'}　{_join([category_name(c) for c in row.categories], '无')}"
              for row in rows]
    lines.append("")
    return "\n".join(lines)
