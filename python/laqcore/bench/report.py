"""Output of ``laqcore bench``: aligned text lines, the README's markdown table and the plot."""

from __future__ import annotations

from typing import Any

__all__ = ["format_row", "markdown_table", "plot"]


def __dir__() -> list[str]:
    return __all__


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _size(n: int) -> str:
    """``2^k`` for a power of two, else the count itself (100 was shown as ``2^6``)."""
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else str(n)


def format_row(r: dict[str, Any]) -> str:
    """One aligned text line of a result."""
    return (
        f"{r['kernel']:<18} n={_size(int(r['n'])):<5} bits={r['bits']} thr={r['threads']:<2d} "
        f"{r['seconds'] * 1e3:9.3f} ms {r['gbps']:7.2f} GB/s  memcpy x{r['memcpy_ratio']:5.2f}  "
        f"numpy x{_fmt(r['numpy_speedup'], '7.1f')}  torch x{_fmt(r['torch_speedup'], '6.1f')}"
    )


def markdown_table(report: dict[str, Any], n: int | None = None) -> str:
    """Markdown table of the results (optionally only size ``n``), as in the README."""
    rows = [r for r in report["results"] if n is None or r["n"] == n]
    lines = [
        "| kernel | n | bits | threads | ms | GB/s | x memcpy | numpy speedup | torch speedup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kernel']} | {_size(int(r['n']))} | {r['bits'] or '-'} | {r['threads']} | "
            f"{r['seconds'] * 1e3:.3f} | {r['gbps']:.2f} | {r['memcpy_ratio']:.2f} | "
            f"{_fmt(r['numpy_speedup'], '.1f')} | {_fmt(r['torch_speedup'], '.1f')} |"
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str) -> None:
    """Throughput (GB/s) against n, one panel per kernel, one line per (bits, threads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["kernel"] for r in report["results"]))
    cols = min(3, max(1, len(names)))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        res = [r for r in report["results"] if r["kernel"] == name]
        for key in dict.fromkeys((r["bits"], r["threads"]) for r in res):
            pts = sorted((r["n"], r["gbps"]) for r in res if (r["bits"], r["threads"]) == key)
            label = (f"{key[0]} bit, " if key[0] else "") + f"{key[1]} thr"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label)
        mem = sorted({(r["n"], r["gbps"] * r["memcpy_ratio"]) for r in res if r["threads"] == 1})
        ax.plot([p[0] for p in mem], [p[1] for p in mem], "k--", lw=1, label="memcpy")
        ax.set_xscale("log", base=2)
        ax.set_title(name)
        ax.set_xlabel("n")
        ax.set_ylabel("GB/s")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(f"laqcore bench: {report['machine']['cpu']} ({report['machine']['simd']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
