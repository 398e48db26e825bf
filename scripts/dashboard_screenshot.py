#!/usr/bin/env python
"""Screenshot of the latest comparison in MLflow's UI, as `workbench dashboard` shows it.

Starts `workbench dashboard` on a store (a free port), waits until the UI answers, opens the page
`workbench dashboard --open` opens (the latest comparison's charts: its nested runs, a parallel-coordinates plot
ending at test accuracy, test accuracy against trainable fraction, test accuracy per run; `--page compare` for
MLflow's compare view of the same runs) in headless Chromium, lets the page render, saves a PNG (shrunk with Pillow
to stay under --max-kb), and stops the dashboard. With no comparison in the store it takes the experiment's runs
table instead, and says so.

    python scripts/dashboard_screenshot.py --tracking-uri sqlite:////tmp/wbC/mlflow.db --out docs/dashboard.png

Needs Chromium (or Chrome): `apt-get install chromium` on Debian/Ubuntu, or point $CHROMIUM (or --chromium) at the
browser's executable. No network is used beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium(given: str | None) -> str:
    for candidate in (given, os.environ.get("CHROMIUM"), *BROWSERS):
        if candidate and (shutil.which(candidate) or (os.path.isfile(candidate) and os.access(candidate, os.X_OK))):
            return shutil.which(candidate) or candidate
    sys.exit("error: this script needs Chromium (or Chrome) to take the screenshot, and found none.\n"
             "  Debian/Ubuntu: sudo apt-get install -y chromium\n"
             "  elsewhere: install Chromium or Chrome and pass its executable with --chromium PATH (or $CHROMIUM)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(chromium: str, url: str, out: Path, width: int, height: int, budget_ms: int) -> None:
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: nothing of the user's browser is touched
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}",
               f"--screenshot={out}", url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not out.exists():
        sys.exit(f"error: Chromium did not save a screenshot (exit {done.returncode}):\n{done.stderr[-2000:]}")


def shrink(src: Path, dst: Path, max_kb: int) -> None:
    """Save `src` as `dst` under `max_kb`: a 256-colour palette first (UI screenshots lose nothing visible), then
    smaller sizes."""
    from PIL import Image

    image = Image.open(src).convert("RGB")
    scale = 1.0
    while True:
        w, h = int(image.width * scale), int(image.height * scale)
        frame = image if scale == 1.0 else image.resize((w, h), Image.LANCZOS)
        frame.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
        if dst.stat().st_size <= max_kb * 1024 or scale < 0.4:
            return
        scale *= 0.85


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracking-uri", help="the store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "dashboard.png"))
    p.add_argument("--port", type=int, help="default: a free one")
    p.add_argument("--chromium", help="the browser's executable (default: $CHROMIUM, else chromium on PATH)")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--wait-ms", type=int, default=60000, help="virtual time the page gets to render (its charts "
                                                              "load last)")
    p.add_argument("--max-kb", type=int, default=300)
    p.add_argument("--page", choices=["open", "compare", "charts", "parent", "experiment"], default="open",
                   help="open (default): what `workbench dashboard --open` opens, the comparison's charts when it has "
                        "them, else its compare view; or that page, the comparison's parent run (its table), or the "
                        "experiment's runs")
    args = p.parse_args(argv)

    from workbench.recipes.mlflow_ui import base_url, dashboard_links, wait_until_ready
    from workbench.tracking import check_tracking_uri, resolve_tracking_uri

    chromium = find_chromium(args.chromium)
    uri = check_tracking_uri(resolve_tracking_uri(args.tracking_uri))
    port = args.port or free_port()
    base = base_url("127.0.0.1", port)
    links = dashboard_links(uri, base)
    url = {"open": links.primary, "compare": links.compare_url, "charts": links.charts_url,
           "parent": links.parent_url, "experiment": links.experiment_url}[args.page]
    if url is None:
        print("note: " + links.lines()[0] + "; taking the experiment's page instead", file=sys.stderr)
        url = links.experiment_url
    print(f"dashboard on {base}; page: {url}", flush=True)

    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    log = tempfile.TemporaryFile("w+")  # the UI's log (a file, not a pipe: a full pipe would stall the UI)
    dash = subprocess.Popen([sys.executable, "-m", "workbench", "dashboard", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        if not wait_until_ready(dash, base, timeout=240):
            log.seek(0)
            sys.exit(f"error: the dashboard did not answer on {base}\n{log.read()[-2000:]}")
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.png"
            screenshot(chromium, url, raw, args.width, args.height, args.wait_ms)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            shrink(raw, out, args.max_kb)
        print(f"saved {out} ({out.stat().st_size // 1024} KB)")
    finally:
        if dash.poll() is None:
            dash.send_signal(signal.SIGTERM)  # the dashboard stops its UI's whole process group
            try:
                dash.wait(timeout=30)
            except subprocess.TimeoutExpired:
                dash.kill()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
