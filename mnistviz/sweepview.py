"""What the Sweeps page shows of a sweep: plotly figures built from sweep.status() (plain data from the study's
storage, so trials run by workers on other machines show too), the hyperparameters' importances by Optuna's fANOVA,
and the runs of the best trials."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from . import sweep

STATE_COLORS = {"complete": "#2ca02c", "pruned": "#d62728", "running": "#1f77b4", "fail": "#7f7f7f",
                "waiting": "#bcbd22", "interrupted": "#ff7f0e"}
MIN_FOR_IMPORTANCE = 2  # fANOVA fits a random forest to the finished trials: with fewer it has nothing to compare


def _label(status: dict) -> str:
    return "validation accuracy" if status["objective"] == "val_acc" else "test accuracy"


def _layout(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def _scored(status: dict) -> list[dict]:
    return [e for e in status["trials"] if e["state"] == "complete" and e["value"] is not None]


def _axis(name: str, spec: dict, values: list) -> dict:
    """One Parcoords dimension: numbers as they are, a log range on a log10 axis with its values as tick labels,
    and choices as evenly spaced categories."""
    if spec.get("kind") == "choice" or any(isinstance(v, str) for v in values):
        cats = list(spec.get("values") or dict.fromkeys(values))
        cats += [v for v in dict.fromkeys(values) if v not in cats]  # an enqueued value outside the choices
        return dict(label=name, values=[cats.index(v) for v in values], tickvals=list(range(len(cats))),
                    ticktext=[str(c) for c in cats], range=[-0.2, len(cats) - 0.8] if len(cats) > 1 else [-1, 1])
    if spec.get("kind") == "loguniform" and all(v > 0 for v in values):
        lo, hi = math.log10(min(spec["low"], *values)), math.log10(max(spec["high"], *values))
        ticks = [t for t in range(math.floor(lo), math.ceil(hi) + 1)]
        return dict(label=f"{name} (log)", values=[math.log10(v) for v in values], range=[lo, hi],
                    tickvals=ticks, ticktext=[f"{10.0 ** t:g}" for t in ticks])
    lo, hi = min([spec.get("low", v) for v in values] + values), max([spec.get("high", v) for v in values] + values)
    return dict(label=name, values=values, range=[lo, hi] if hi > lo else [lo - 1, hi + 1])


def parallel_coordinates(status: dict, space: dict) -> go.Figure | None:
    """The finished trials as lines through one axis per searched hyperparameter and the objective, coloured by the
    objective; drag along an axis to brush (keep only the lines through that stretch). None without a finished trial."""
    done = _scored(status)
    if not done:
        return None
    names = list(dict.fromkeys([k for k in space] + [k for e in done for k in e["params"]]))
    dims = [_axis(k, space.get(k, {}), [e["params"].get(k) for e in done]) for k in names
            if all(k in e["params"] for e in done)]
    values = [e["value"] for e in done]
    dims.append(dict(label=_label(status), values=values, tickformat=".2%"))
    fig = go.Figure(go.Parcoords(dimensions=dims, line=dict(color=values, colorscale="Viridis", showscale=True,
                                                                  colorbar=dict(tickformat=".1%"))))
    return _layout(fig, 360).update_layout(margin=dict(l=60, r=40, t=50, b=20))


def objective_history(status: dict) -> go.Figure | None:
    """The objective of each finished trial against its number, the best so far as a step line, and each pruned
    trial at the last value it reported. None while no trial has a value."""
    done = _scored(status)
    pruned = [e for e in status["trials"] if e["state"] == "pruned" and e["curve"]]
    if not done and not pruned:
        return None
    fig = go.Figure()
    if done:
        best, line = -math.inf, []
        for e in done:
            best = max(best, e["value"])
            line.append(best)
        fig.add_scatter(x=[e["number"] for e in done], y=line, mode="lines", line_shape="hv", name="best so far",
                        line=dict(color="#444", dash="dot"))
        fig.add_scatter(x=[e["number"] for e in done], y=[e["value"] for e in done], mode="markers",
                        name="complete", marker=dict(color=STATE_COLORS["complete"], size=9),
                        text=[e["run"] for e in done], hovertemplate="trial %{x}: %{y:.2%}<br>%{text}<extra></extra>")
    if pruned:
        fig.add_scatter(x=[e["number"] for e in pruned], y=[e["curve"][-1][1] for e in pruned], mode="markers",
                        name="pruned (last value)", marker=dict(color=STATE_COLORS["pruned"], symbol="x", size=9),
                        text=[e["run"] for e in pruned], hovertemplate="trial %{x}: %{y:.2%}<br>%{text}<extra></extra>")
    fig.update_xaxes(title_text="trial", dtick=1 if len(status["trials"]) <= 20 else None)
    fig.update_yaxes(title_text=_label(status), tickformat=".1%")
    return _layout(fig, 300).update_layout(legend=dict(orientation="h", y=1.12, x=0))


def learning_curves(status: dict) -> go.Figure | None:
    """Each trial's objective at every epoch it reported, overlaid: complete trials solid, running ones dotted,
    pruned ones dashed and ended by a cross where the pruner stopped them. None while no epoch was reported."""
    trials = [e for e in status["trials"] if e["curve"]]
    if not trials:
        return None
    fig = go.Figure()
    for e in trials:
        x, y = [c[0] for c in e["curve"]], [c[1] for c in e["curve"]]
        state = "interrupted" if e.get("interrupted") else e["state"]
        color = STATE_COLORS.get(state, "#7f7f7f")
        dash = {"pruned": "dash", "running": "dot"}.get(state, "solid")
        fig.add_scatter(x=x, y=y, mode="lines+markers", name=f"trial {e['number']} ({state})",
                        line=dict(color=color, dash=dash, width=1.5), marker=dict(size=5), opacity=0.85,
                        hovertemplate=f"trial {e['number']} ({state})<br>epoch %{{x}}: %{{y:.2%}}<extra></extra>")
        if state == "pruned":
            fig.add_scatter(x=[x[-1]], y=[y[-1]], mode="markers", showlegend=False, hoverinfo="skip",
                            marker=dict(symbol="x", size=12, color=color))
    fig.update_xaxes(title_text="epoch", dtick=1 if max(c[0] for e in trials for c in e["curve"]) <= 20 else None)
    fig.update_yaxes(title_text=_label(status), tickformat=".1%")
    return _layout(fig, 340)


def importances(name: str, runs_dir=None, storage: str | None = None) -> tuple[dict | None, str | None]:
    """({hyperparameter: importance}, None) by Optuna's fANOVA over the finished trials, most important first; or
    (None, why there are none yet) in a sentence."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    study, spec = sweep._study(name, sweep.storage_url(storage, runs_dir))
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < MIN_FOR_IMPORTANCE:
        return None, (f"Importances need at least {MIN_FOR_IMPORTANCE} finished trials to compare; this sweep has "
                      f"{len(done)}.")
    if len(spec["space"]) < 2:
        return None, f"Only {', '.join(spec['space'])} is searched: there is nothing to rank it against."
    try:
        import sklearn  # noqa: F401  (fANOVA's random forest)
    except ImportError:
        return None, "Importances need scikit-learn (fANOVA's random forest): pip install scikit-learn."
    try:
        return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0)), None
    except (RuntimeError, ValueError) as e:  # e.g. no parameter common to all finished trials
        return None, f"No importances for these trials: {e}"


def importance_figure(imp: dict) -> go.Figure:
    names = list(imp)[::-1]  # the most important on top
    fig = go.Figure(go.Bar(x=[imp[n] for n in names], y=names, orientation="h", marker_color="#268bd2",
                           hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    fig.update_xaxes(title_text="share of the objective's variance (fANOVA)", tickformat=".0%", range=[0, 1])
    return _layout(fig, 60 + 40 * len(names))


def top_runs(status: dict, k: int = 3) -> list[str]:
    """The runs of the `k` best finished trials, best first."""
    done = sorted((e for e in _scored(status) if e["run"]), key=lambda e: -e["value"])
    return [e["run"] for e in done[:k]]
