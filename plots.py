"""Figures of a run, written as PNGs into its output folder (matplotlib, no display needed).

    python plots.py outputs/ppo-quickstart     # a ppo.py run: metrics.jsonl, eval.json (alone: --eval_only)
    python plots.py outputs/rm-quickstart      # a reward_modeling.py run: metrics.json (or eval_results.json)

ppo.py and reward_modeling.py call it at the end of every run; a plotting error is a warning there,
never a failed run. The figure builders return matplotlib Figures, so tests read their axes and data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# metrics.jsonl key -> panel title, per PPO update (PPO-NOTES.md: the signals that show PPO failing)
PPO_PANELS = {
    "score": ["objective/scores"],
    "KL to the reference (nats)": ["objective/kl"],
    "entropy (nats/token)": ["objective/entropy"],
    "response length (tokens)": ["rollout/response_length"],
    "EOS rate": ["rollout/eos_rate"],
    "clip fractions": ["policy/clipfrac", "val/clipfrac"],
    "value loss": ["loss/value"],
    "explained variance": ["val/explained_variance"],
}


def _figure(n_panels: int, cols: int = 4):
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    rows = -(-n_panels // cols)
    cols = min(cols, n_panels)
    fig = Figure(figsize=(max(4 * cols, 6), 3.2 * rows + 0.6), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    return fig, axes


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ppo_training_figure(history: list[dict]):
    """One panel per signal of PPO_PANELS against the update number."""
    fig, axes = _figure(len(PPO_PANELS))
    for ax, (title, keys) in zip(axes, PPO_PANELS.items()):
        for key in keys:
            rows = [m for m in history if key in m]
            ax.plot([m["update"] for m in rows], [m[key] for m in rows], marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("update")
        if len(keys) > 1:
            ax.legend(fontsize="small")
    return fig


def overoptimization_figure(points: list[dict]):
    """Gao et al. 2022, fig. 1: gain over the reference (policy - reference, ± standard error over
    prompts) of the proxy and of each gold reward model against sqrt(KL) across evaluations. A proxy
    that keeps rising while the gold falls is reward over-optimisation."""
    fig, (ax,) = _figure(1)
    x = [p["sqrt_kl"] for p in points]
    curves = {"proxy": [p["proxy"] for p in points]}
    for name in points[-1]["gold"] if points else []:
        curves[f"gold {name}"] = [p["gold"][name] for p in points]
    for label, figures in curves.items():
        ax.errorbar(
            x,
            [f["gain_mean"] for f in figures],
            yerr=[f["gain_se"] for f in figures],
            marker="o",
            capsize=3,
            label=label,
        )
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_title("gain over the reference vs sqrt(KL)")
    ax.set_xlabel("sqrt(KL(policy || reference)), sqrt(nats)")
    ax.set_ylabel("score gain (± s.e. over prompts)")
    ax.legend(fontsize="small")
    return fig


def diagnostics_figure(points: list[dict]):
    """The reward-hacking diagnostics of each evaluation, policy beside reference."""
    keys = list(points[0]["diagnostics"]["policy"])
    fig, axes = _figure(len(keys), cols=len(keys))
    updates = [p["update"] for p in points]
    for ax, key in zip(axes, keys):
        for side in ("policy", "reference"):
            ax.plot(updates, [p["diagnostics"][side][key] for p in points], marker="o", label=side)
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("update")
        ax.legend(fontsize="small")
    return fig


def reward_model_training_figure(log_history: list[dict]):
    """Training loss and accuracy per logged step (and the evaluations' accuracy, when there were any)."""
    fig, (loss_ax, acc_ax) = _figure(2)
    for ax, keys, title in (
        (loss_ax, ("loss", "eval_loss"), "loss"),
        (acc_ax, ("accuracy", "eval_accuracy"), "accuracy"),
    ):
        for key in keys:
            rows = [h for h in log_history if key in h and "step" in h]
            if rows:
                ax.plot([h["step"] for h in rows], [h[key] for h in rows], marker=".", label=key)
        ax.set_title(f"training {title}")
        ax.set_xlabel("step")
        if ax.get_lines():  # a run too short to log a step has none
            ax.legend(fontsize="small")
    return fig


def reliability_figure(metrics: dict):
    """Reliability diagram of P(chosen preferred) = sigmoid(margin): held-out accuracy against the
    mean confidence of each confidence bin; a calibrated model lies on the diagonal."""
    fig, (ax,) = _figure(1)
    table = metrics["calibration"]
    ax.plot([0.5, 1.0], [0.5, 1.0], linestyle="--", color="grey", label="calibrated")
    ax.plot(
        [b["confidence"] for b in table], [b["accuracy"] for b in table], marker="o", label="reward model"
    )
    for b in table:
        ax.annotate(str(b["pairs"]), (b["confidence"], b["accuracy"]), fontsize="x-small")
    ax.set_title(f"reliability (ECE {metrics['expected_calibration_error']:.3f})")
    ax.set_xlabel("confidence max(p, 1-p), p = sigmoid(margin)")
    ax.set_ylabel("held-out accuracy")
    ax.legend(fontsize="small")
    return fig


def figures_for(out: Path) -> dict:
    """{file name: Figure} for a ppo.py or reward_modeling.py output folder."""
    out = Path(out)
    if (out / "metrics.jsonl").is_file() or (out / "eval.json").is_file():  # eval.json alone: --eval_only
        figs = {}
        if (out / "metrics.jsonl").is_file():
            figs["training.png"] = ppo_training_figure(read_jsonl(out / "metrics.jsonl"))
        points = (
            json.loads((out / "eval.json").read_text()).get("points", [])
            if (out / "eval.json").is_file()
            else []
        )
        if points:
            figs["overoptimization.png"] = overoptimization_figure(points)
            figs["diagnostics.png"] = diagnostics_figure(points)
        return figs
    if (out / "metrics.json").is_file():
        metrics = json.loads((out / "metrics.json").read_text())
        figs = {"calibration.png": reliability_figure(metrics["eval"])}
        if metrics.get("log_history"):
            figs["training.png"] = reward_model_training_figure(metrics["log_history"])
        return figs
    if (out / "eval_results.json").is_file():  # reward_modeling.py --eval_only
        return {"calibration.png": reliability_figure(json.loads((out / "eval_results.json").read_text()))}
    raise FileNotFoundError(
        f"{out}: neither a ppo.py output (metrics.jsonl, eval.json) nor a reward_modeling.py one (metrics.json, eval_results.json)"
    )


def write_plots(out: Path) -> list[Path]:
    written = []
    for name, fig in figures_for(out).items():
        fig.savefig(Path(out) / name, dpi=100)
        written.append(Path(out) / name)
    return written


def plot_safely(out: Path) -> None:
    """The end of a run: plots are a convenience, so a failure is a warning, never a failed run."""
    try:
        written = write_plots(out)
        print(f"[plots] wrote {', '.join(p.name for p in written)} to {out}")
    except Exception as e:
        print(f"[plots] warning: no plots for {out}: {type(e).__name__}: {e}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python plots.py OUTPUT_DIR")
    for path in write_plots(Path(sys.argv[1])):
        print(path)
