"""Evaluation plots rendered server-side as PNG (matplotlib's Agg backend: no display, no JS)."""

from __future__ import annotations

import io
from typing import Any

from selector.models import version_short_name

# Colours per series, fixed so the same thing looks the same on every page.
_COLOURS = {
    "selector": "#1f77b4",
    "compared": "#7f7f7f",
    "majority": "#d62728",
    "random": "#2ca02c",
}


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    # A bare Figure (not pyplot) keeps no global state, so concurrent requests don't collide.
    fig = Figure(figsize=(5.0, 4.0), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _legend(fig: Any, ax: Any) -> None:
    """Below the axes, never over the data (constrained layout makes room for it)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")


def _compared_label(metrics: dict[str, Any], active_name: str | None) -> str:
    """The other version's legend entry: its short name, "(active)" only while it still is."""
    other = metrics.get("compared_with") or {}
    name = str(other.get("version") or "compared version")
    label = version_short_name(name, other.get("version_id"))
    return f"{label} (active)" if active_name is not None and name == active_name else label


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555")
    ax.set_xticks([])
    ax.set_yticks([])


def roc_png(metrics: dict[str, Any], active_name: str | None = None) -> bytes:
    """Step-level ROC (negative step vs not) for the version and, if present, the version it was
    compared with on the same held-out labels."""
    fig, ax = _figure()
    mine = version_short_name(str(metrics.get("version") or "this version"),
                              metrics.get("version_id"))  # fmt: skip
    series = [(metrics, mine, _COLOURS["selector"])]
    if metrics.get("compared_with"):
        other = metrics["compared_with"]
        series.append((other, _compared_label(metrics, active_name), _COLOURS["compared"]))
    drawn = False
    for m, label, colour in series:
        roc = m.get("roc") or {}
        if not roc.get("fpr"):
            continue
        auroc = (m.get("step") or {}).get("auroc")
        suffix = f" AUROC {auroc:.3f}" if isinstance(auroc, int | float) else ""
        ax.plot(roc["fpr"], roc["tpr"], color=colour, label=f"{label}{suffix}")
        drawn = True
    if not drawn:
        _empty(ax, "no ROC: the held-out set needs negative and other steps")
        return _png(fig)
    ax.plot([0, 1], [0, 1], linestyle=":", color="#bbb", label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (negative steps found)")
    ax.set_title("Step-level ROC on held-out labels")
    _legend(fig, ax)
    return _png(fig)


def best_of_n_png(metrics: dict[str, Any], active_name: str | None = None) -> bytes:
    """Best-of-N accuracy vs N: the selector's top pick, majority vote and a random pick."""
    fig, ax = _figure()
    bon = metrics.get("best_of_n") or {}
    if not bon.get("n"):
        _empty(ax, "no best-of-N: no held-out problem has several graded candidates")
        return _png(fig)
    ns = bon["n"]
    ax.plot(ns, bon["selector"], marker="o", color=_COLOURS["selector"], label="selector")
    other = (metrics.get("compared_with") or {}).get("best_of_n") or {}
    if other.get("n"):
        ax.plot(
            other["n"],
            other["selector"],
            marker="o",
            linestyle="--",
            color=_COLOURS["compared"],
            label=_compared_label(metrics, active_name),
        )
    ax.plot(ns, bon["majority"], marker="s", color=_COLOURS["majority"], label="majority vote")
    ax.plot(ns, bon["random"], marker="^", color=_COLOURS["random"], label="random pick")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("N (candidates per problem)")
    ax.set_ylabel("accuracy of the chosen answer")
    ax.set_title("Best-of-N on held-out problems")
    _legend(fig, ax)
    return _png(fig)


PLOTS = {"roc": roc_png, "best_of_n": best_of_n_png}
