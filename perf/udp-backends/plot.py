#!/usr/bin/env python3
"""Median table (Markdown, on stdout) and results.png from results.json.

    python3 perf/udp-backends/plot.py [results.json] [--no-plot]

The plot needs matplotlib (`pip install matplotlib`); without it only the
table is printed.
"""
import json
import os
import statistics
import sys

# Row order and labels for the table and the plot.
ROWS = [
    ("plain", "plain `send_to` / `recv_from`"),
    ("mmsg", "`sendmmsg` ×32 / `recvmmsg` ×32"),
    ("gso-mmsg", "`sendmsg`+GSO / `recvmmsg` ×32, no GRO"),
    ("gso-gro", "`sendmsg`+GSO / `recvmmsg` ×32 + GRO"),
    ("tokio-uring", "tokio-uring `send_to` / `recv_from`, 1 in flight"),
    ("tokio-uring-inflight", "tokio-uring, 32 sends + 32 recvs in flight"),
    ("uring-ms-gso", "io-uring `SendMsg`+GSO ×8 / `RecvMsgMulti`+buf ring, no GRO"),
    ("uring-ms-gso-gro", "io-uring `SendMsg`+GSO ×8 / `RecvMsgMulti`+buf ring + GRO"),
]

# Baselines from shared/reference.md (same machine kind, loopback), drawn as
# markers on the plot: plain 229k/s, mmsg ×32 271k/s, GSO (54 × 1,200 B)
# without GRO 1.35M seg/s, with GRO 5.55M seg/s, tokio-uring send_to ~114k/s.
REFERENCE = {
    "plain": 229e3,
    "mmsg": 271e3,
    "gso-mmsg": 1.35e6,
    "gso-gro": 5.55e6,
    "tokio-uring": 114e3,
}


def k(x):
    return f"{x / 1e3:,.0f}k" if x < 1e6 else f"{x / 1e6:.2f}M"


def summarise(runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["backend"], r["size"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        def col(f):
            return [f(r) for r in rs]

        recv = col(lambda r: r["recv_per_s"])
        sent = col(lambda r: r["sent_per_s"])
        out[key] = {
            "n": len(rs),
            "recv": (statistics.median(recv), min(recv), max(recv)),
            "sent": (statistics.median(sent), min(sent), max(sent)),
            "mb": statistics.median(col(lambda r: r["recv_mb_s"])),
            "loss": (statistics.median(col(lambda r: r["loss_pct"])), max(col(lambda r: r["loss_pct"]))),
            # CPU per datagram: thread CPU (user+sys) / datagrams handled.
            "tx_ns": statistics.median(
                col(lambda r: 1e9 * (r["tx_cpu_user"] + r["tx_cpu_sys"]) / max(r["sent"], 1))
            ),
            "rx_ns": statistics.median(
                col(lambda r: 1e9 * (r["rx_cpu_user"] + r["rx_cpu_sys"]) / max(r["received"], 1))
            ),
        }
    return out


def table(summary):
    lines = [
        "| loop (sender / receiver) | size | received/s median (min–max) | sent/s median (min–max) "
        "| MB/s recv | loss % median (max) | tx CPU ns/dgram | rx CPU ns/dgram |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sorted({s for _, s in summary}):
        for key, label in ROWS:
            m = summary.get((key, size))
            if not m:
                continue
            rm, rlo, rhi = m["recv"]
            sm, slo, shi = m["sent"]
            lines.append(
                f"| {label} | {size} B | **{k(rm)}** ({k(rlo)}–{k(rhi)}) | {k(sm)} ({k(slo)}–{k(shi)}) "
                f"| {m['mb']:,.0f} | {m['loss'][0]:.2f} ({m['loss'][1]:.2f}) | {m['tx_ns']:,.0f} | {m['rx_ns']:,.0f} |"
            )
    return "\n".join(lines)


def plot(summary, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install matplotlib): no plot", file=sys.stderr)
        return
    sizes = sorted({s for _, s in summary})
    fig, axes = plt.subplots(1, len(sizes), figsize=(7 * len(sizes), 5), sharey=True)
    if len(sizes) == 1:
        axes = [axes]
    keys = [k_ for k_, _ in ROWS]
    for ax, size in zip(axes, sizes):
        ys, med, lo, hi, colors = [], [], [], [], []
        for i, key in enumerate(keys):
            m = summary.get((key, size))
            if not m:
                continue
            rm, rlo, rhi = m["recv"]
            ys.append(i)
            med.append(rm)
            lo.append(rm - rlo)
            hi.append(rhi - rm)
            colors.append(
                "tab:red" if key.startswith("tokio") else "tab:green" if key.startswith("uring") else "tab:blue"
            )
        ax.barh(ys, med, xerr=[lo, hi], color=colors, capsize=3)
        ref = [(i, REFERENCE[key_]) for i, key_ in enumerate(keys) if key_ in REFERENCE]
        ax.scatter(
            [v for _, v in ref], [i for i, _ in ref], marker="D", color="black", s=18, zorder=3,
            label="reference.md baseline",
        )
        ax.set_xscale("log")
        ax.set_title(f"{size} B datagrams, loopback, 1 sender → 1 receiver thread")
        ax.set_xlabel("datagrams received / s (median, bar = min–max)")
        ax.grid(axis="x", which="both", alpha=0.3)
        for y, v, h in zip(ys, med, hi):
            ax.text((v + h) * 1.08, y, k(v), va="center", fontsize=8)
        ax.set_xlim(right=max(m + h for m, h in zip(med, hi)) * 4)
        ax.legend(loc="upper right", fontsize=8)
    axes[0].set_yticks(range(len(keys)))
    axes[0].set_yticklabels(keys)
    axes[0].invert_yaxis()
    fig.suptitle("UDP I/O loops: blue = libc syscalls, red = tokio-uring, green = io-uring crate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", file=sys.stderr)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json")
    data = json.load(open(path))
    summary = summarise(data["runs"])
    reps = max(m["n"] for m in summary.values())
    print(f"{reps} runs per row; kernel {data['meta'].get('kernel')}, {data['meta'].get('cpus')} CPUs\n")
    print(table(summary))
    if "--no-plot" not in sys.argv:
        plot(summary, os.path.join(os.path.dirname(os.path.abspath(path)), "results.png"))


if __name__ == "__main__":
    main()
