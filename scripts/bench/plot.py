#!/usr/bin/env python3
"""plot.py -- bar chart of a bench-e2e.sh run.

    scripts/bench/plot.py RESULTS.json [CHART.png]

Reads the results.json that scripts/bench-e2e.sh writes and draws, with
gnuplot, one panel per metric: one bar per variant (mode, or udpringd flag set
in a --flags-sweep) at the median over rounds, with a min..max error bar and
the median printed above it.  CHART.png defaults to chart.png next to
RESULTS.json.  The gnuplot script is kept beside the chart (CHART.gp), so the
picture can be redrawn or restyled by hand.

Uses only the Python standard library and the gnuplot binary (Debian:
gnuplot-nox).  The pngcairo terminal is used when this gnuplot has it, else
the libgd "png" terminal.  Set PLOT_TERMINAL=png|pngcairo to force one.
Exit status: 0 on success, 1 on any error (message on stderr).
"""
import json
import math
import os
import shutil
import subprocess
import sys

# Bar colours: udpring variants (a few blues/greens for sweeps), then the
# kernel references.
OURS_COLOURS = [0x1F77B4, 0x2CA02C, 0x9467BD, 0x17BECF, 0x8C564B, 0xBCBD22,
                0xE377C2, 0x7F7F7F]
REF_COLOURS = {"vxlan": 0xFF7F0E, "routing": 0x999999}


def gp_str(s):
    """A gnuplot double-quoted string; a literal newline becomes \\n."""
    s = str(s).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + s.replace("\n", "\\n") + '"'


def gp_num(x):
    return "NaN" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def terminal_available(gnuplot, name):
    try:
        r = subprocess.run([gnuplot, "-e", "set terminal %s" % name],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def bar_label(v):
    """X tick label: mode name, or a sweep's own flags (without the -- ARGS
    that every run shares; those are in the title), one per line, leading
    dashes dropped to keep the columns narrow."""
    if v["mode"] != "udpring" or v["name"] == "udpring":
        return v["name"]
    label = v.get("label") or ""
    flags = [] if label.startswith("(") else label.split()
    return "\n".join(f.lstrip("-") for f in flags) if flags else "default flags"


def build_script(results, png, terminal):
    config, summary = results["config"], results["summary"]
    metrics = [m for m in config["metrics"] if m in summary]
    if not metrics:
        raise ValueError("no metrics in the summary")
    variants = config["variants"]
    meta = config["metric_meta"]

    ncol = min(3, len(metrics))
    nrow = (len(metrics) + ncol - 1) // ncol
    max_lines = max(bar_label(v).count("\n") + 1 for v in variants)
    longest = max(len(line) for v in variants for line in bar_label(v).split("\n"))
    panel_w = max(420, max(110, 8 * longest + 20) * len(variants) + 90)
    panel_h = 340 + 16 * max_lines
    width, height = panel_w * ncol, panel_h * nrow + 50

    colours, k = [], 0
    for v in variants:
        if v["mode"] == "udpring":
            colours.append(OURS_COLOURS[k % len(OURS_COLOURS)])
            k += 1
        else:
            colours.append(REF_COLOURS.get(v["mode"], 0x444444))

    what = ("flags sweep" if config.get("flags_sweep") is not None
            else "modes " + ",".join(v["name"] for v in variants))
    title = ("udpring end-to-end: %s; median of %d round(s) x %d s, bars = min..max\n"
             "kernel %s, git %s, underlay offloads %s"
             % (what, config["rounds"], config["time_s"], config.get("kernel", "?"),
                config.get("git_rev", "?"), config.get("underlay_offload", "no-uso")))
    if config.get("udpringd_args"):
        title += "; every udpringd run also had: " + " ".join(config["udpringd_args"])

    g = []
    if terminal == "pngcairo":
        g.append("set terminal pngcairo noenhanced size %d,%d font 'DejaVu Sans,9'"
                 % (width, height))
    else:
        g.append("set terminal png noenhanced size %d,%d" % (width, height))
    g.append("set output %s" % gp_str(png))
    g += [
        "set style fill solid 0.85 border rgb 'black'",
        "set boxwidth 0.65",
        "set grid ytics lc rgb '#dddddd'",
        "set border 3",
        "set xtics nomirror scale 0",
        "set ytics nomirror",
        "set key off",
        "set yrange [0:*]",
        # headroom above the tallest bar for its value label
        "set offsets 0, 0, graph 0.15, 0",
        "set xrange [-0.6:%g]" % (len(variants) - 0.4),
        # room for multi-line tick labels (sweeps) and two-line panel titles
        "set bmargin %d" % (max_lines + 2),
        "set tmargin 4",
        "set multiplot layout %d,%d title %s" % (nrow, ncol, gp_str(title)),
    ]
    xtics = ", ".join("%s %d" % (gp_str(bar_label(v)), i) for i, v in enumerate(variants))
    g.append("set xtics (%s)" % xtics)

    for idx, m in enumerate(metrics):
        mm = meta[m]
        fmt = mm.get("fmt", "%.2f")
        rows = []
        for i, v in enumerate(variants):
            st = summary[m].get(v["name"], {})
            rows.append("%d %s %s %s %d" % (i, gp_num(st.get("median")), gp_num(st.get("min")),
                                            gp_num(st.get("max")), colours[i]))
        block = "$d%d" % idx
        g.append("%s << EOD" % block)
        g += rows
        g.append("EOD")
        better = "lower is better" if mm["better"] == "lower" else "higher is better"
        g.append("set title %s" % gp_str("%s (%s)\n%s" % (mm["label"], mm["unit"], better)))
        g.append("set ylabel %s" % gp_str(mm["unit"]))
        g.append(
            "plot %s using 1:2:5 with boxes lc rgb variable, "
            "'' using 1:3:(0):($4-$3) with vectors nohead lc rgb 'black' lw 1.5, "
            "'' using 1:4:(sprintf(%s, $2)) with labels offset 0,0.8"
            % (block, gp_str(fmt)))
    g.append("unset multiplot")
    g.append("set output")
    return "\n".join(g) + "\n"


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write(__doc__)
        return 0 if len(argv) >= 2 else 1
    results_path = argv[1]
    png = argv[2] if len(argv) > 2 else os.path.join(os.path.dirname(results_path) or ".",
                                                     "chart.png")
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        sys.stderr.write("plot: gnuplot not found (Debian package gnuplot-nox)\n")
        return 1
    try:
        results = json.load(open(results_path))
    except (OSError, ValueError) as e:
        sys.stderr.write("plot: cannot read %s: %s\n" % (results_path, e))
        return 1

    terminal = os.environ.get("PLOT_TERMINAL")
    if not terminal:
        terminal = "pngcairo" if terminal_available(gnuplot, "pngcairo") else "png"
    try:
        script = build_script(results, png, terminal)
    except (KeyError, ValueError, TypeError) as e:
        sys.stderr.write("plot: unexpected results layout: %r\n" % (e,))
        return 1
    gp_path = os.path.splitext(png)[0] + ".gp"
    with open(gp_path, "w") as f:
        f.write(script)
    try:
        r = subprocess.run([gnuplot, gp_path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        sys.stderr.write("plot: gnuplot failed: %s\n" % e)
        return 1
    if r.returncode != 0 or not os.path.isfile(png) or os.path.getsize(png) == 0:
        sys.stderr.write("plot: gnuplot failed (rc=%d):\n%s" %
                         (r.returncode, r.stderr.decode(errors="replace")[-2000:]))
        return 1
    # gnuplot warns (e.g. about fonts) without failing; pass those on.
    err = r.stderr.decode(errors="replace").strip()
    if err:
        sys.stderr.write("plot: gnuplot said:\n%s\n" % err[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
