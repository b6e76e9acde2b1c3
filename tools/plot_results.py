"""Plot test accuracy against distillation temperature from the experiment's results JSON.

    /usr/bin/python3 tools/plot_results.py --results docs/results/fashion-mnist.json \
        --out docs/results/accuracy-vs-temperature.png

One line per alpha (mean ± sample std over seeds as error bars), a band for the student alone
(mean ± std) and a line for the teacher. Only the tfjs grid runs recorded under "grid" in the JSON
are used, the same selection as docs/results.md. Needs matplotlib (apt-get install python3-matplotlib).
"""
import argparse
import json
import statistics

import matplotlib

matplotlib.use("Agg")  # no display on build machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402


def stats(xs):
    xs = [100 * x for x in xs]
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="docs/results/fashion-mnist.json")
    ap.add_argument("--out", default="docs/results/accuracy-vs-temperature.png")
    a = ap.parse_args()
    with open(a.results) as f:
        data = json.load(f)
    g = data["grid"]
    recipe = [r for r in data["runs"] if r["framework"] == "tfjs" and r["val_fraction"] == 0
              and r["student"] == g["student"] and r["epochs"] == g["epochs"]
              and r["batch_size"] == g["batch_size"] and r["seed"] in g["seeds"] and r["accuracy"] is not None]
    runs = [r for r in recipe if r["lr"] == g["lr"]]
    baselines = [(lr, [r["accuracy"] for r in recipe if r["lr"] == lr and r["alpha"] == 0]) for lr in g.get("baseline_lrs", [])]
    baselines = [(lr, accs) for lr, accs in baselines if accs]
    temps = sorted(g["temperatures"])

    teacher = 100 * data["teacher"]["test_accuracy"]
    alone = [r["accuracy"] for r in runs if r["alpha"] == 0]
    series = []
    for alpha in sorted(g["alphas"]):
        pts = []
        for T in temps:
            accs = [r["accuracy"] for r in runs if r["alpha"] == alpha and r["temperature"] == T]
            if accs:
                pts.append((T, *stats(accs), len(accs)))
        if pts:
            series.append((alpha, pts))
    lows = [m - s for _, pts in series for _, m, s, _ in pts]
    highs = [m + s for _, pts in series for _, m, s, _ in pts]
    if alone:
        am, asd = stats(alone)
        lows.append(am - asd)
        highs.append(am + asd)
    for _, accs in baselines:
        lows.append(stats(accs)[0])
        highs.append(stats(accs)[0])
    pad = 0.15 * (max(highs) - min(lows)) + 0.1
    low, high = min(lows) - pad, max(highs) + pad

    # The teacher sits several points above the students: a broken y axis keeps both visible
    # without squashing the differences between students that the plot is about.
    broken = teacher > high + 0.5
    if broken:
        fig, (top, ax) = plt.subplots(2, 1, sharex=True, figsize=(7.5, 5.4), dpi=130,
                                      gridspec_kw={"height_ratios": [1, 5], "hspace": 0.06})
    else:
        fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=130)
        top = ax
        high = max(high, teacher + pad)
    top.axhspan(teacher - 0.05, teacher + 0.05, color="k", alpha=0.25, lw=0)
    top.axhline(teacher, color="k", ls="--", lw=1, label=f"teacher (ONNX CNN): {teacher:.2f}%")
    if alone:
        ax.axhspan(am - asd, am + asd, color="0.85", zorder=0, label=f"student alone at lr {g['lr']:g}: {am:.2f} ± {asd:.2f}% (n={len(alone)})")
        ax.axhline(am, color="0.45", lw=1, zorder=1)
    for lr, accs in baselines:
        bm, bsd = stats(accs)
        ax.axhline(bm, color="0.3", ls=":", lw=1.5, zorder=1,
                   label=f"student alone at lr {lr:g}: {bm:.2f} ± {bsd:.2f}% (n={len(accs)})")
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for i, (alpha, pts) in enumerate(series):
        # A small horizontal offset per alpha keeps the error bars apart on the log axis.
        x = [T * (1 + 0.04 * (i - (len(series) - 1) / 2)) for T, _, _, _ in pts]
        ax.errorbar(x, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", ms=5, capsize=3, lw=1.5,
                    color=colors[i % len(colors)], label=f"distilled, alpha {alpha} (n={min(p[3] for p in pts)})")
    ax.set_ylim(low, high)
    if broken:
        top.set_ylim(teacher - 0.6, teacher + 0.6)
        top.spines["bottom"].set_visible(False)
        ax.spines["top"].set_visible(False)
        top.tick_params(bottom=False)
        kw = dict(marker=[(-1, -0.5), (1, 0.5)], markersize=10, linestyle="none", color="k", mec="k", mew=1, clip_on=False)
        top.plot([0, 1], [0, 0], transform=top.transAxes, **kw)
        ax.plot([0, 1], [1, 1], transform=ax.transAxes, **kw)
        top.legend(fontsize=8.5, loc="lower right")
        top.grid(True, axis="y", alpha=0.3)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(temps))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in temps])
    ax.set_xlabel("distillation temperature T (log scale)")
    ax.set_ylabel("test accuracy (%), 10,000 images")
    ax.grid(True, axis="y", alpha=0.3)
    top.set_title(f"Fashion-MNIST, student {g['student']}, {g['epochs']} epoch{'s' if g['epochs'] != 1 else ''}, lr {g['lr']}, batch {g['batch_size']}; "
                  "mean ± std over seeds", fontsize=9.5)
    # Below the axes, so that it never hides a point.
    ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    fig.savefig(a.out, bbox_inches="tight")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
