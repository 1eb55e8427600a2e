"""Eval reports: the JSON record of a run rendered as Markdown and as a self-contained HTML page
(metric, bootstrap confidence interval, yours vs published, per-subgroup tables, a bar plot), and the
side-by-side comparison of two runs (or more: base, SFT and GRPO adapters) with the items whose
answers changed."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from aris.notice import NOTICE


def _pct(v: float | None) -> str:
    """A 0..1 value as a percentage, or a dash for a missing (None/NaN) one."""
    return "—" if v is None or v != v else f"{100 * v:.1f}"


def _num(v: float | None, digits: int, empty: str = "—") -> str:
    return empty if v is None else f"{v:.{digits}f}"


def metric_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, m in run["metrics"].items():
        rows.append(
            {
                "metric": name,
                "value": m["value"],
                "ci": m.get("ci"),
                "published": m.get("published"),
                "n": m.get("n", len(run["items"])),
            }
        )
    return rows


PUBLISHED_NOTE = (
    "“published” is the MedGemma 1.5 4B figure for the benchmark named with --benchmark (its source is "
    "listed below); it is comparable only when this dataset is that benchmark's test split run with the "
    "report's prompts (prompts: report)."
)


def _published_lines(run: dict[str, Any]) -> list[str]:
    rows = [(n, m) for n, m in run["metrics"].items() if m.get("published") is not None]
    if not rows:
        return []
    lines = ["", "## Published figures", ""]
    for name, m in rows:
        src = m.get("published_source") or "MedGemma 1.5 model card / technical report"
        lines.append(f"- {name} {m['published']:.1f}: {src}")
    return lines


def _report_prompt_lines(protocol: Any) -> list[str]:
    rp = protocol.get("report_prompt") if isinstance(protocol, dict) else None
    if not isinstance(rp, dict):
        return []
    return [
        "",
        "## Prompt",
        "",
        f"- source: {rp['source']}",
        f"- max new tokens: {rp['max_new_tokens']} ({rp['max_new_tokens_why']})",
        "",
        "```text",
        rp["template"],
        "```",
    ]


def _choice_lines(protocol: Any) -> list[str]:
    choices = protocol.get("choices") if isinstance(protocol, dict) else None
    if not choices:
        return []
    return ["", "## Where the report is silent (choices made)", "", *(f"- {c}" for c in choices)]


def _protocol_lines(protocol: Any) -> list[str]:
    if not isinstance(protocol, dict):
        return [f"- protocol: {json.dumps(protocol)}"]
    lines = ["", "## Protocol", ""]
    for k, v in protocol.items():
        if k in ("report_prompt", "choices") and v and not isinstance(v, str):
            continue  # shown in their own sections
        shown = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        lines.append(f"- {k}: {shown}")
    return lines


def to_markdown(run: dict[str, Any]) -> str:
    counts = run.get("counts") or {}
    failed = [i for i in run["items"] if i.get("error")]
    lines = [
        f"# Aris eval: {run['task']} on {Path(run['dataset']).name}",
        "",
        f"- model: `{run['model']}` ({run['engine']})",
        f"- items: {len(run['items'])} ({len(failed)} failed)"
        + (
            f"; scored {counts['scored']}, no readable answer {counts['no_answer']}, "
            f"repaired {counts['repaired']}, truncated {counts.get('truncated', 0)}"
            if counts
            else ""
        ),
        f"- dataset sha256: `{run.get('dataset_sha256', '')[:16]}`",
        f"- versions: {', '.join(f'{k} {v}' for k, v in run.get('versions', {}).items())}",
    ]
    if run.get("benchmark"):
        lines.append(f"- benchmark: {run['benchmark']}")
    src = run.get("source") or {}
    if src.get("layout") and src["layout"] != "aris":
        lines.append(
            f"- read with the {src['layout']} adapter (split {src.get('split')}): {src.get('rows')} rows, "
            f"{src.get('left_out', 0)} left out by the adapter"
        )
    proto = run.get("protocol") if isinstance(run.get("protocol"), dict) else {}
    if proto:
        lines.append(f"- prompts: {proto.get('prompts', 'app')}, mode: {proto.get('mode')}")
    lines += [
        "",
        "| metric | yours (%) | 95% CI | published MedGemma 1.5 4B (%) | n |",
        "|---|---|---|---|---|",
    ]
    for r in metric_rows(run):
        ci = f"{_pct(r['ci'][0])}–{_pct(r['ci'][1])}" if r["ci"] else "—"
        pub = f"{r['published']:.1f}" if r["published"] is not None else "—"
        lines.append(f"| {r['metric']} | {_pct(r['value'])} | {ci} | {pub} | {r['n']} |")
    if run.get("subgroups"):
        names = list(run["metrics"])
        lines += [
            "",
            "## Subgroups",
            "",
            "| subgroup | n | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for sub, vals in sorted(run["subgroups"].items()):
            lines.append(f"| {sub} | {vals['n']} | " + " | ".join(_pct(vals.get(n)) for n in names) + " |")
    if any(r["published"] is not None for r in metric_rows(run)):
        lines += ["", PUBLISHED_NOTE]
        lines += _published_lines(run)
    lines += _report_prompt_lines(run.get("protocol", {}))
    lines += _choice_lines(run.get("protocol", {}))
    lines += _protocol_lines(run.get("protocol", {}))
    cut = [i for i in run["items"] if i.get("truncated")]
    if cut:
        lines += [
            "",
            f"## Truncated replies ({len(cut)})",
            "",
            "The first reply used the whole token budget, or thought without answering; scored as given "
            "(usually no readable answer). Raise --max-new-tokens to rerun them.",
            "",
            *(f"- {i['id']}" for i in cut[:50]),
        ]
    if failed:
        lines += ["", "## Failed items (left out of the metrics)", ""]
        lines += [f"- {i['id']}: {i['error']}" for i in failed[:50]]
        if len(failed) > 50:
            lines.append(f"- … and {len(failed) - 50} more (see run.json)")
    lines += ["", f"> {NOTICE}", ""]
    return "\n".join(lines)


def _bar_svg(rows: list[dict[str, Any]]) -> str:
    """A small inline SVG bar chart: yours (with CI whiskers) next to published, 0-100 %."""
    w, bar, gap, h = 640, 18, 30, 40 + len(rows) * 2 * 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        'aria-label="metrics chart" font-family="sans-serif" font-size="12">'
    ]
    x0, scale = 170, (w - 200) / 100
    for i, r in enumerate(rows):
        y = 20 + i * 2 * gap
        out.append(f'<text x="0" y="{y + 13}">{html.escape(r["metric"])}</text>')
        v = r["value"]
        val = 100 * v if v is not None and v == v else 0.0
        out.append(f'<rect x="{x0}" y="{y}" width="{val * scale:.1f}" height="{bar}" fill="#2f80c0"/>')
        out.append(f'<text x="{x0 + val * scale + 6:.1f}" y="{y + 13}">{val:.1f}</text>')
        if r["ci"] and None not in r["ci"]:
            lo, hi = (100 * c for c in r["ci"])
            out.append(
                f'<line x1="{x0 + lo * scale:.1f}" x2="{x0 + hi * scale:.1f}" y1="{y + bar / 2}" '
                f'y2="{y + bar / 2}" stroke="#111" stroke-width="2"/>'
            )
        if r["published"] is not None:
            out.append(
                f'<rect x="{x0}" y="{y + bar + 2}" width="{r["published"] * scale:.1f}" height="{bar / 2}" '
                'fill="#bbb"/>'
            )
    out.append(
        f'<text x="{x0}" y="{h - 4}" fill="#555">blue: yours (line: 95% CI) · grey: published</text></svg>'
    )
    return "".join(out)


def to_html(run: dict[str, Any]) -> str:
    md_rows = metric_rows(run)
    esc = html.escape
    table = "".join(
        f"<tr><td>{esc(r['metric'])}</td><td>{_pct(r['value'])}</td>"
        f"<td>{(_pct(r['ci'][0]) + '–' + _pct(r['ci'][1])) if r['ci'] else '—'}</td>"
        f"<td>{_num(r['published'], 1)}</td><td>{r['n']}</td></tr>"
        for r in md_rows
    )
    subs = ""
    if run.get("subgroups"):
        names = list(run["metrics"])
        subs = (
            "<h2>Subgroups</h2><table><tr><th>subgroup</th><th>n</th>"
            + "".join(f"<th>{esc(n)}</th>" for n in names)
            + "</tr>"
            + "".join(
                f"<tr><td>{esc(s)}</td><td>{v['n']}</td>"
                + "".join(f"<td>{_pct(v.get(n))}</td>" for n in names)
                + "</tr>"
                for s, v in sorted(run["subgroups"].items())
            )
            + "</table>"
        )
    note = f"<p>{esc(PUBLISHED_NOTE)}</p>" if any(r["published"] is not None for r in md_rows) else ""
    protocol = run.get("protocol", {})
    proto = (
        "<h2>Protocol</h2><ul>"
        + "".join(
            f"<li><b>{esc(str(k))}</b>: {esc(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))}</li>"
            for k, v in protocol.items()
        )
        + "</ul>"
        if isinstance(protocol, dict)
        else ""
    )
    items = "".join(
        f"<tr><td>{esc(str(i['id']))}</td><td>{esc(str(i.get('prediction')))}</td><td>{esc(str(i.get('reference')))}</td>"
        f"<td>{_num(i.get('score'), 2, '')}</td><td>{esc(i.get('error') or '')}</td></tr>"
        for i in run["items"][:500]
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Aris eval: {esc(run["task"])}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;max-width:1100px}}table{{border-collapse:collapse;margin:8px 0 18px}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.notice{{background:#fff6d5;padding:8px;border:1px solid #e6c200}}</style>
</head><body><h1>Aris eval: {esc(run["task"])} on {esc(Path(run["dataset"]).name)}</h1>
<p class="notice">{esc(NOTICE)}</p>
<p>model <code>{esc(run["model"])}</code> ({esc(run["engine"])}) · {len(run["items"])} items · protocol
<code>{esc(json.dumps(run.get("protocol", {})))}</code> · dataset sha256 <code>{esc(run.get("dataset_sha256", "")[:16])}</code></p>
<table><tr><th>metric</th><th>yours (%)</th><th>95% CI</th><th>published MedGemma 1.5 4B (%)</th><th>n</th></tr>{table}</table>
{_bar_svg(md_rows)}{note}{subs}{proto}
<h2>Items</h2><table><tr><th>id</th><th>prediction</th><th>reference</th><th>score</th><th>error</th></tr>{items}</table>
</body></html>"""


def write_reports(run: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "run.json", "markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(run, indent=2, default=str))
    paths["markdown"].write_text(to_markdown(run))
    paths["html"].write_text(to_html(run))
    return paths


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two runs side by side: each metric's values and difference, and the items whose answers changed."""
    metrics = {}
    for name in sorted(set(a["metrics"]) | set(b["metrics"])):
        va = a["metrics"].get(name, {}).get("value")
        vb = b["metrics"].get(name, {}).get("value")
        metrics[name] = {"a": va, "b": vb, "delta": None if va is None or vb is None else vb - va}
    ia = {str(i["id"]): i for i in a["items"]}
    changed = []
    for item in b["items"]:
        old = ia.get(str(item["id"]))
        if old is not None and old.get("prediction") != item.get("prediction"):
            changed.append(
                {
                    "id": item["id"],
                    "a": old.get("prediction"),
                    "b": item.get("prediction"),
                    "reference": item.get("reference"),
                    "a_score": old.get("score"),
                    "b_score": item.get("score"),
                }
            )
    return {
        "a": {"model": a["model"], "engine": a["engine"]},
        "b": {"model": b["model"], "engine": b["engine"]},
        "metrics": metrics,
        "changed": changed,
    }


def compare_markdown(cmp: dict[str, Any]) -> str:
    """A comparison (from :func:`compare`) as Markdown: the metrics side by side, then changed items."""
    a, b = cmp["a"], cmp["b"]
    lines = [
        "# Aris eval comparison",
        "",
        f"- A: `{a['model']}` ({a['engine']})",
        f"- B: `{b['model']}` ({b['engine']})",
        "",
        "| metric | A (%) | B (%) | B − A (points) |",
        "|---|---|---|---|",
    ]
    for name, m in cmp["metrics"].items():
        delta = "—" if m["delta"] is None else f"{100 * m['delta']:+.1f}"
        lines.append(f"| {name} | {_pct(m['a'])} | {_pct(m['b'])} | {delta} |")
    lines += ["", f"## Items whose answer changed ({len(cmp['changed'])})", ""]
    if cmp["changed"]:
        lines += ["| id | A | B | reference |", "|---|---|---|---|"]
        for c in cmp["changed"]:
            cells = [str(c["id"]), *(json.dumps(c[k], ensure_ascii=False) for k in ("a", "b", "reference"))]
            lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    else:
        lines.append("None.")
    return "\n".join([*lines, ""])


def run_label(run: dict[str, Any]) -> str:
    """A run's short name: its model, and the adapter over it (base, SFT and GRPO runs share a model)."""
    label = Path(str(run["model"])).name
    adapter = (run.get("settings") or {}).get("adapter")
    if not adapter:
        return label
    name = Path(str(adapter)).name
    # the engine names its model "base+adapter" (runs recorded before that: the base alone)
    return f"{label.removesuffix('+' + name)} + {name}"


def compare_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one dataset side by side, the first as the reference: each metric's values and
    its difference from the first run, and the items whose prediction is not the same in every run
    (e.g. the base model, an SFT adapter and a GRPO adapter on the held-out items)."""
    names = sorted({name for r in runs for name in r["metrics"]})
    metrics: dict[str, Any] = {}
    for name in names:
        values = [r["metrics"].get(name, {}).get("value") for r in runs]
        first = values[0]
        metrics[name] = {
            "values": values,
            "deltas": [None if v is None or first is None else v - first for v in values[1:]],
        }
    by_id = [{str(i["id"]): i for i in r["items"]} for r in runs]
    changed = []
    for item in runs[0]["items"]:
        key = str(item["id"])
        rows = [m.get(key) for m in by_id]
        if any(r is None for r in rows):
            continue
        preds = [r.get("prediction") for r in rows if r is not None]
        if len({json.dumps(p, sort_keys=True, default=str) for p in preds}) > 1:
            changed.append(
                {
                    "id": item["id"],
                    "predictions": preds,
                    "scores": [r.get("score") for r in rows if r is not None],
                    "reference": item.get("reference"),
                }
            )
    return {
        "runs": [
            {
                "label": run_label(r),
                "model": r["model"],
                "engine": r["engine"],
                "adapter": (r.get("settings") or {}).get("adapter"),
            }
            for r in runs
        ],
        "metrics": metrics,
        "changed": changed,
    }


def compare_runs_markdown(cmp: dict[str, Any]) -> str:
    """A comparison from :func:`compare_runs` as Markdown."""
    letters = [chr(ord("A") + i) for i in range(len(cmp["runs"]))]
    lines = ["# Aris eval comparison", ""]
    lines += [f"- {k}: `{r['label']}` ({r['engine']})" for k, r in zip(letters, cmp["runs"], strict=True)]
    lines += [
        "",
        "| metric | "
        + " | ".join(f"{k} (%)" for k in letters)
        + " | "
        + " | ".join(f"{k} − A (points)" for k in letters[1:])
        + " |",
        "|---|" + "---|" * (2 * len(letters) - 1),
    ]
    for name, m in cmp["metrics"].items():
        deltas = ["—" if d is None else f"{100 * d:+.1f}" for d in m["deltas"]]
        lines.append(
            f"| {name} | " + " | ".join(_pct(v) for v in m["values"]) + " | " + " | ".join(deltas) + " |"
        )
    lines += ["", f"## Items whose answer differs ({len(cmp['changed'])})", ""]
    if cmp["changed"]:
        lines += ["| id | " + " | ".join(letters) + " | reference |", "|---|" + "---|" * (len(letters) + 1)]
        for c in cmp["changed"]:
            cells = [str(c["id"]), *(json.dumps(p, ensure_ascii=False) for p in c["predictions"])]
            cells.append(json.dumps(c["reference"], ensure_ascii=False))
            lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    else:
        lines.append("None.")
    return "\n".join([*lines, ""])
