"""A hand-written SVG line chart: achievement % per week, one line per policy."""

from __future__ import annotations

from xml.sax.saxutils import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
WIDTH, HEIGHT = 760, 380
LEFT, RIGHT, TOP, BOTTOM = 56, 190, 40, 56


def achievement_chart(title: str, weeks: list[str], series: dict[str, list[float | None]]) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / len(weeks) if weeks else 0)

    def y(pct: float) -> float:
        return TOP + plot_h * (1 - pct / 100)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for pct in (0, 25, 50, 75, 100):
        out.append(
            f'<line x1="{LEFT}" y1="{y(pct):.1f}" x2="{LEFT + plot_w}" y2="{y(pct):.1f}"'
            f' stroke="#ddd"/><text x="{LEFT - 6}" y="{y(pct) + 4:.1f}"'
            f' text-anchor="end">{pct}%</text>'
        )
    step = max(1, len(weeks) // 8)
    for i, week in enumerate(weeks):
        if i % step == 0:
            out.append(
                f'<text x="{x(i):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">'
                f"{escape(week)}</text>"
            )
    out.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 12}" text-anchor="middle">'
        "week starting (Monday)</text>"
    )
    if not weeks:
        out.append(
            f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}"'
            ' text-anchor="middle" fill="#888">no fulfilled or breached targets</text>'
        )
    for n, (name, values) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        run: list[str] = []
        runs = [run]
        for i, value in enumerate(values):
            if value is None:
                run = []
                runs.append(run)
                continue
            run.append(f"{x(i):.1f},{y(value):.1f}")
            out.append(
                f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)} {escape(weeks[i])}: {value}%</title></circle>"
            )
        for points in runs:
            if len(points) > 1:
                out.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2"'
                    f' points="{" ".join(points)}"/>'
                )
        legend_y = TOP + 14 + 18 * n
        out.append(
            f'<rect x="{WIDTH - RIGHT + 16}" y="{legend_y - 9}" width="12" height="12"'
            f' fill="{colour}"/><text x="{WIDTH - RIGHT + 34}" y="{legend_y + 1}">'
            f"{escape(name[:28])}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)
