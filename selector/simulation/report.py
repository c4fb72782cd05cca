"""Turning simulated runs into a data-efficiency ratio with a 95% interval, curves and a summary.

Inputs are plain dicts (what the runner writes), so this module needs numpy/scipy/matplotlib
only. ``held_out``: the frozen held-out trajectories, the same for every arm and seed::

    {"problem": [int per trajectory], "ratings": [[-1|0|1 per rated step]], "fair": [bool]}

(``fair``: the rating reached a verdict, found_error or solution, so a first-error call can be
judged). ``runs[arm][seed]`` is a list of rounds ``{"labels", "steps_rated", "scores"}`` where
``scores`` holds each held-out trajectory's step scores from that round's selector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selector.ml.metrics import auroc, first_error_decided, predicted_first_error

METRICS = ("step_auroc", "f1")
THRESHOLD = 0.5  # ProcessBench: the predicted first error is the first step scored below it


@dataclass
class _Prepared:
    """One round's held-out data, flattened so a bootstrap resample is one fancy index."""

    y: np.ndarray  # per rated step: negative?
    risk: np.ndarray  # per rated step: 1 - score; NaN where the model left it unscored
    hit: np.ndarray  # per fair trajectory: first-error call right?
    erroneous: np.ndarray  # per fair trajectory: has an error?
    # Past the window (decision 0005's one rule): left out of the metrics, counted.
    decided: np.ndarray  # per fair trajectory: the call needs scored steps only
    unscored_rated_steps: int = 0


class HeldOutIndex:
    def __init__(self, held_out: Mapping[str, Any]) -> None:
        self.ratings: list[list[int]] = [list(r) for r in held_out["ratings"]]
        self.fair: list[bool] = [bool(f) for f in held_out["fair"]]
        problem = [int(p) for p in held_out["problem"]]
        self.problems = sorted(set(problem))
        where = {p: i for i, p in enumerate(self.problems)}
        steps_of: list[list[int]] = [[] for _ in self.problems]
        traj_of: list[list[int]] = [[] for _ in self.problems]
        step = fair_i = 0
        for t, ratings in enumerate(self.ratings):
            steps_of[where[problem[t]]].extend(range(step, step + len(ratings)))
            step += len(ratings)
            if self.fair[t]:
                traj_of[where[problem[t]]].append(fair_i)
                fair_i += 1
        self.steps_of = [np.asarray(s, dtype=int) for s in steps_of]
        self.traj_of = [np.asarray(s, dtype=int) for s in traj_of]
        self.y = np.asarray([r == -1 for rs in self.ratings for r in rs], dtype=bool)
        self.first_error = [
            next((i for i, r in enumerate(rs) if r == -1), None)
            for rs, f in zip(self.ratings, self.fair, strict=True)
            if f
        ]

    def prepare(self, scores: Sequence[Sequence[float]]) -> _Prepared:
        if len(scores) != len(self.ratings):
            raise ValueError(f"{len(scores)} scored trajectories for {len(self.ratings)} held out")
        risk: list[float] = []
        hit: list[bool] = []
        decided: list[bool] = []
        unscored = 0
        for rs, ss, fair in zip(self.ratings, scores, self.fair, strict=True):
            # A step the model could not score (past its window) has no score: never imputed.
            risk.extend(1.0 - float(s) for s in ss[: len(rs)])
            risk.extend([math.nan] * max(0, len(rs) - len(ss)))
            unscored += sum(1 for r in rs[len(ss) :] if r is not None)
            if fair:
                first_error = next((i for i, r in enumerate(rs) if r == -1), None)
                predicted = predicted_first_error(ss, THRESHOLD)
                hit.append(predicted == first_error)
                decided.append(
                    first_error_decided(n_scored=len(ss), n_steps=len(rs), first_error=first_error)
                )
        erroneous = np.asarray([f is not None for f in self.first_error], dtype=bool)
        return _Prepared(
            self.y,
            np.asarray(risk, dtype=float),
            np.asarray(hit, dtype=bool),
            erroneous,
            np.asarray(decided, dtype=bool),
            unscored,
        )

    def metric(self, prepared: _Prepared, name: str, problems: np.ndarray | None = None) -> float:
        """``name`` on the held-out set, or on a resample given as problem positions."""
        if name == "step_auroc":
            y, risk = prepared.y, prepared.risk
            if problems is not None:
                idx = np.concatenate([self.steps_of[p] for p in problems])
                y, risk = y[idx], risk[idx]
            scored = ~np.isnan(risk)
            return auroc(y[scored], risk[scored])
        if name == "f1":
            hit, err, decided = prepared.hit, prepared.erroneous, prepared.decided
            if problems is not None:
                idx = np.concatenate([self.traj_of[p] for p in problems])
                hit, err, decided = hit[idx], err[idx], decided[idx]
            hit, err = hit[decided], err[decided]
            if not err.any() or err.all():
                return float("nan")
            acc_err, acc_ok = hit[err].mean(), hit[~err].mean()
            return (
                0.0 if acc_err + acc_ok == 0 else float(2 * acc_err * acc_ok / (acc_err + acc_ok))
            )
        raise ValueError(f"unknown metric {name!r}; use one of {', '.join(METRICS)}")


Values = Sequence[float] | np.ndarray


def labels_to_reach(labels: Values, values: Values, target: float) -> tuple[float, str | None]:
    """Labels at which a curve first reaches ``target``, interpolated linearly on log(labels).

    The curve is made monotone (running maximum) first, so noise cannot make it reach the
    target "earlier" after a dip. Returns (labels, censored): censored is ``"below"`` when the
    first point already reaches the target (the true figure is at most that), ``"above"``
    when the curve never does (at least the last point's labels).
    """
    xs = np.log(np.asarray(labels, dtype=float))
    ys = np.maximum.accumulate(np.nan_to_num(np.asarray(values, dtype=float), nan=-np.inf))
    if ys[0] >= target:
        return float(labels[0]), "below"
    for i in range(1, len(xs)):
        if ys[i] >= target:
            frac = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
            return float(math.exp(xs[i - 1] + frac * (xs[i] - xs[i - 1]))), None
    return float(labels[-1]), "above"


def ratio_of(
    uniform: tuple[Values, Values],
    active: tuple[Values, Values],
) -> tuple[float, str | None]:
    """(labels uniform needs to match the active arm's final value) / (the active arm's final
    labels); censored as in :func:`labels_to_reach`."""
    labels, values = active
    needed, censored = labels_to_reach(uniform[0], uniform[1], values[-1])
    return needed / labels[-1], censored


def ratio_matched(
    baseline: tuple[Values, Values],
    active: tuple[Values, Values],
) -> tuple[float, str | None]:
    """(labels the baseline needs) / (labels the active arm needs) to reach the lower of their
    two best values: for two arms that end at the same budget, where :func:`ratio_of` could
    never exceed 1 (the baseline has no labels past the active arm's last point)."""
    target = min(
        float(np.nanmax(np.asarray(baseline[1], dtype=float))),
        float(np.nanmax(np.asarray(active[1], dtype=float))),
    )
    needed_base, cens_base = labels_to_reach(baseline[0], baseline[1], target)
    needed_active, cens_active = labels_to_reach(active[0], active[1], target)
    return needed_base / needed_active, cens_base or cens_active


# The ratios beside the two of ``analyse``'s arguments, when both arms ran: (report key, active
# arm, baseline arm, ratio). Against uniform, which runs past the others' budget, the usual
# ratio; against 80/20, which ends where they end, the matched one.
RULE_COMPARISONS: tuple[tuple[str, str, str, str], ...] = (
    ("data_efficiency_uncertainty", "uncertainty", "uniform", "final"),
    ("data_efficiency_uncertainty_vs_80_20", "uncertainty", "80_20", "matched"),
    ("data_efficiency_mixed", "mixed", "uniform", "final"),
    ("data_efficiency_mixed_vs_80_20", "mixed", "80_20", "matched"),
)
_RATIOS = {"final": ratio_of, "matched": ratio_matched}


def _seed_mean(
    index: HeldOutIndex,
    prepared: Mapping[str, Mapping[int, list[_Prepared]]],
    runs: Mapping[str, Mapping[int, list[Mapping[str, Any]]]],
    arm: str,
    seeds: Sequence[int],
    metric: str,
    problems: np.ndarray | None,
    x: str = "labels",
) -> tuple[np.ndarray, np.ndarray]:
    rounds = min(len(runs[arm][s]) for s in seeds)
    xs = np.asarray([[runs[arm][s][r][x] for r in range(rounds)] for s in seeds], dtype=float)
    ys = np.asarray(
        [
            [index.metric(prepared[arm][s][r], metric, problems) for r in range(rounds)]
            for s in seeds
        ]
    )
    return xs.mean(axis=0), np.nanmean(ys, axis=0)


def analyse(
    *,
    held_out: Mapping[str, Any],
    runs: Mapping[str, Mapping[int, list[Mapping[str, Any]]]],
    metric: str = "step_auroc",
    active_arm: str = "80_20",
    baseline_arm: str = "uniform",
    prm_baseline_arm: str = "random_wrong",
    resamples: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """The data-efficiency ratios (against ``baseline_arm`` and ``prm_baseline_arm``), their
    paired bootstrap intervals, and per-arm curves with bands.

    Paired bootstrap: each resample draws seeds with replacement (the same seeds for every
    arm: arms that share a seed share its seed set) and held-out problems with replacement
    (the same for every arm and round), recomputes every curve and the ratio. The interval
    is the 2.5th to 97.5th percentile; censored resamples enter at their bound.
    """
    index = HeldOutIndex(held_out)
    seeds = sorted(runs[baseline_arm])
    prepared = {
        arm: {s: [index.prepare(r["scores"]) for r in rounds] for s, rounds in by_seed.items()}
        for arm, by_seed in runs.items()
    }
    curves: dict[str, dict[str, Any]] = {}
    for arm in runs:
        arm_seeds = sorted(runs[arm])
        entry: dict[str, Any] = {}
        for m in METRICS:
            lx, y = _seed_mean(index, prepared, runs, arm, arm_seeds, m, None)
            sx, _ = _seed_mean(index, prepared, runs, arm, arm_seeds, m, None, x="steps_rated")
            entry[m] = {"labels": lx.tolist(), "steps_rated": sx.tolist(), "mean": y.tolist()}
        curves[arm] = entry
    # (report key, active arm, baseline arm): what the active arm's final value is worth in
    # the baseline's labels. ``data_efficiency_prm`` against the grader alone is what the
    # PRM's ranking adds beyond it.
    comparisons = [
        ("data_efficiency", active_arm, baseline_arm, "final"),
        ("data_efficiency_prm", active_arm, prm_baseline_arm, "final"),
        *RULE_COMPARISONS,
    ]
    pairs = [
        (key, active, base, how)
        for key, active, base, how in comparisons
        if active in runs and base in runs and active != base
    ]
    points = {
        key: _RATIOS[how](
            _seed_mean(index, prepared, runs, base, seeds, metric, None),
            _seed_mean(index, prepared, runs, active, seeds, metric, None),
        )
        for key, active, base, how in pairs
    }
    rng = np.random.default_rng(seed)
    n_problems = len(index.problems)
    ratios: dict[str, list[float]] = {key: [] for key, _, _, _ in pairs}
    censored = dict.fromkeys(ratios, 0)
    band_draws: dict[str, dict[str, list[np.ndarray]]] = {
        arm: {m: [] for m in METRICS} for arm in runs
    }
    for _ in range(resamples):
        seeds_b = list(rng.choice(seeds, size=len(seeds), replace=True))
        problems_b = rng.integers(0, n_problems, size=n_problems)
        means: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        for arm in runs:
            arm_seeds = seeds_b if set(seeds_b) <= set(runs[arm]) else sorted(runs[arm])
            for m in METRICS:
                means[arm, m] = _seed_mean(index, prepared, runs, arm, arm_seeds, m, problems_b)
                band_draws[arm][m].append(means[arm, m][1])
        for key, active, base, how in pairs:
            value, cens = _RATIOS[how](means[base, metric], means[active, metric])
            ratios[key].append(value)
            censored[key] += cens is not None
    for arm in runs:
        for m in METRICS:
            draws = np.asarray(band_draws[arm][m])
            curves[arm][m]["lo"] = np.nanpercentile(draws, 2.5, axis=0).tolist()
            curves[arm][m]["hi"] = np.nanpercentile(draws, 97.5, axis=0).tolist()
    out: dict[str, Any] = {}
    for key, active, base, how in comparisons:
        if key not in points and (key, active, base, how) in RULE_COMPARISONS:
            continue  # a rule's comparison appears only when both its arms ran
        point = points.get(key, (float("nan"), None))
        ratio_draws = ratios.get(key) or []
        ci = (
            [float(np.percentile(ratio_draws, 2.5)), float(np.percentile(ratio_draws, 97.5))]
            if ratio_draws
            else [float("nan"), float("nan")]
        )
        out[key] = {
            "metric": metric,
            "arms": [active, base],
            "ratio": point[0],
            "censored": point[1],
            "ci95": ci,
            "method": (
                (
                    f"labels {base} needs to reach {active}'s final {metric}, interpolated on "
                    f"log(labels), over {active}'s final labels"
                    if how == "final"
                    else f"labels {base} needs over labels {active} needs to reach the lower of "
                    f"their best {metric} values, interpolated on log(labels)"
                )
                + "; paired bootstrap over "
                f"{len(seeds)} seeds and {n_problems} held-out problems, {resamples} resamples "
                f"({censored.get(key, 0)} censored)"
            ),
        }
    return {
        **out,
        "curves": curves,
        # Past the window, per arm: the largest count over its seeds and rounds (the same
        # tokenizer and window score every held-out solution alike).
        "unscored": {
            arm: {
                "rated_steps": max(
                    (p.unscored_rated_steps for rounds in by_seed.values() for p in rounds),
                    default=0,
                ),
                "undecided_first_errors": max(
                    (int((~p.decided).sum()) for rounds in by_seed.values() for p in rounds),
                    default=0,
                ),
            }
            for arm, by_seed in prepared.items()
        },
    }


def _mean_metric(rounds: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [r["metrics"].get(key) for r in rounds]
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def ceiling_of(
    raw: Mapping[str, Mapping[int, Mapping[str, Any]]],
    *,
    config: Mapping[str, Any],
    active_arm: str = "80_20",
) -> dict[str, Any] | None:
    """What the model learns from every training candidate: the uniform arm's last round when
    the run has ``ceiling`` on (it labels everything left), mean over seeds. ``room`` puts
    uniform's seed-set point and its value at the active arm's final budget (interpolated on
    log(labels)) beside it: selection can only matter where these are well below."""
    if not config.get("ceiling") or "uniform" not in raw:
        return None
    finals = [by["rounds"][-1] for by in raw["uniform"].values() if by["rounds"]]
    firsts = [by["rounds"][0] for by in raw["uniform"].values() if by["rounds"]]
    if not finals:
        return None
    out: dict[str, Any] = {
        "arm": "uniform",
        "labels": float(np.mean([f["labels"] for f in finals])),
        "step_auroc": _mean_metric(finals, "step_auroc"),
        "f1": _mean_metric(finals, "f1"),
        "f1_tuned": _mean_metric(finals, "f1_tuned"),
        "threshold": _mean_metric(finals, "threshold"),
        "seeds": len(finals),
    }
    room: dict[str, Any] = {
        "seed_set": {
            "labels": float(np.mean([f["labels"] for f in firsts])),
            "step_auroc": _mean_metric(firsts, "step_auroc"),
        }
    }
    if active_arm in raw and active_arm != "uniform":
        budget = float(
            np.mean([by["rounds"][-1]["labels"] for by in raw[active_arm].values() if by["rounds"]])
        )
        n = min(len(by["rounds"]) for by in raw["uniform"].values())
        xs = [float(np.mean([by["rounds"][r]["labels"] for by in raw["uniform"].values()]))
              for r in range(n)]  # fmt: skip
        ys = [_mean_metric([by["rounds"][r] for by in raw["uniform"].values()], "step_auroc")
              for r in range(n)]  # fmt: skip
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        value = None
        if pts and pts[0][0] <= budget <= pts[-1][0]:
            lx = np.log([x for x, _ in pts])
            value = float(np.interp(math.log(budget), lx, [y for _, y in pts]))
        room[f"at_{active_arm}_final"] = {"labels": budget, "step_auroc": value}
    out["room"] = room
    return out


def plots_write(curves: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """``curves_labels.png`` and ``curves_steps.png``: each metric against labels / steps
    rated, seed mean with its 95% bootstrap band, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for x, name, xlabel in (
        ("labels", "curves_labels.png", "labels (solutions rated)"),
        ("steps_rated", "curves_steps.png", "steps rated"),
    ):
        # Constrained layout with one legend below the panels: never over the data.
        fig, axes = plt.subplots(
            1, len(METRICS), figsize=(5 * len(METRICS), 4.4), layout="constrained"
        )
        for ax, m in zip(np.atleast_1d(axes), METRICS, strict=True):
            for arm, entry in curves.items():
                c = entry[m]
                (line,) = ax.plot(c[x], c["mean"], marker="o", label=arm)
                ax.fill_between(c[x], c["lo"], c["hi"], color=line.get_color(), alpha=0.15)
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel({"step_auroc": "step AUROC", "f1": "first-error F1"}.get(m, m))
            ax.grid(alpha=0.3)
        handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
        path = out_dir / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return "n/a" if value is None else str(value)


def summary_write(report: Mapping[str, Any], out_dir: Path) -> Path:
    de = report["data_efficiency"]
    ratio_lines: list[str] = []
    for key in ("data_efficiency", "data_efficiency_prm", *(c[0] for c in RULE_COMPARISONS)):
        r = report.get(key)
        if not r or r.get("ratio") is None:
            continue
        ratio_lines += [
            f"- `{key}` ({r['arms'][0]} vs {r['arms'][1]}, {r['metric']}): "
            f"{_fmt(r['ratio'])}x (95% CI {_fmt(r['ci95'][0])} to {_fmt(r['ci95'][1])})"
            + (f", censored {r['censored']}" if r.get("censored") else "")
        ]
    ceiling = report.get("ceiling")
    if ceiling:
        room = ceiling.get("room") or {}
        ratio_lines += [
            f"- ceiling (uniform, every training candidate, {_fmt(ceiling['labels'], 0)} labels): "
            f"step AUROC {_fmt(ceiling['step_auroc'])}, F1 {_fmt(ceiling['f1'])} at 0.5, "
            f"{_fmt(ceiling.get('f1_tuned'))} at the held-in threshold"
            + "".join(
                f"; uniform at {k} ({_fmt(v.get('labels'), 0)} labels): {_fmt(v.get('step_auroc'))}"
                for k, v in room.items()
            )
        ]
    lines = [
        "# Active-learning simulation",
        "",
        f"Preset `{report['config']['preset']}`, pool `{report['config']['pool']}`, "
        f"{report['config']['seeds']} seeds, {report['config']['rounds']} rounds.",
        "",
        f"**Data efficiency ({de['arms'][0]} vs {de['arms'][1]}, {de['metric']}):** "
        f"{_fmt(de['ratio'])}x (95% CI {_fmt(de['ci95'][0])} to {_fmt(de['ci95'][1])})"
        + {
            "above": f": {de['arms'][1]} never reached {de['arms'][0]}'s final value, so the "
            "ratio is a lower bound (its largest budget over that of the other)",
            "below": f": {de['arms'][1]} was there before its first budget, so the ratio is "
            "an upper bound",
        }.get(de.get("censored") or "", "")
        + ".",
        "",
        de["method"] + ".",
        "",
        *ratio_lines,
        "",
        "| arm | labels | steps rated | step AUROC | F1 | first error found / correct kept "
        "| best-of-N (selector / majority) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm, by_seed in report["arms"].items():
        finals = [rounds[-1] for rounds in by_seed.values() if rounds]

        def mean(key: str, finals: list[dict[str, Any]] = finals) -> float:
            values = [
                float(f["metrics"].get(key)) for f in finals if f["metrics"].get(key) is not None
            ]
            return float(np.mean(values)) if values else float("nan")

        labels = float(np.mean([f["labels"] for f in finals])) if finals else float("nan")
        steps = float(np.mean([f["steps_rated"] for f in finals])) if finals else float("nan")
        lines.append(
            f"| {arm} | {labels:.0f} | {steps:.0f} | {_fmt(mean('step_auroc'))} | "
            f"{_fmt(mean('f1'))} | {_fmt(mean('acc_erroneous'))} / {_fmt(mean('acc_correct'))} | "
            f"{_fmt(mean('bon_selector'))} / {_fmt(mean('bon_majority'))} "
            f"(N = {_fmt(mean('bon_n'), 0)}) |"
        )
    pool = report.get("pool") or {}
    if pool:
        lines += [
            "",
            f"Pool: {pool['problems']} problems, {pool['candidates']} candidates; held out "
            f"(the same for every arm): {pool['held_out_problems']} problems, "
            f"{pool['held_out_labels']} fully labeled solutions. Final round, mean over seeds. "
            "F1 is ProcessBench's (the first step scored below 0.5 is the predicted error): "
            "a selector that scores no step below 0.5 finds no error and gets F1 0.",
        ]
    unscored = report.get("unscored") or {}
    if unscored:
        counts = ", ".join(
            f"{arm} {u['rated_steps']} / {u['undecided_first_errors']}"
            for arm, u in unscored.items()
        )
        lines += [
            "",
            "Past the model's window (left out, never imputed; rated steps / first-error calls "
            f"per arm): {counts}.",
        ]
    lines += ["", "Curves: `curves_labels.png`, `curves_steps.png` (seed mean, 95% band).", ""]
    path = out_dir / "summary.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
