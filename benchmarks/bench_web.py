"""The explorer (`pbrsim serve`): how long its users wait, and what its web stack costs to start and install.

Run: python benchmarks/bench_web.py [--repeat 5]

Cases, each against a reference timed in the same run (ratios printed beside the seconds and the goal):

- stack: import time of candidate web stacks in a fresh process (best of --repeat, less `python -c pass`) and the
  size on disk of what each adds to pbrsim's own dependencies; reference: `python -c "import numpy"`.
- start-up: `pbrsim serve --port 0` from process start to its first answered request; reference: `import numpy`.
- first page load: headless Chromium (when chromium and chromedriver are installed) from navigation to the
  scenario list filled in (page, script, stylesheet and the first API call); goal 3 s. Reference: the same
  page's four HTTP requests fetched by Python's urllib (no rendering).
- exact update: POST /api/update with one lever changed (validation + exact mode), median of --repeat; goal
  0.5 s; reference: the same exact-mode call made in this process (so the ratio is the web's overhead).
- 200 replications: POST /api/run for blended_vcs, seed 7, 200 replications, polled to the end; goal 3 s;
  reference: the plain numpy time-stepped chain of benchmarks/bench_pipeline.py over the same 200 replications.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(ROOT / "benchmarks"))
ENV = {**os.environ, "PYTHONPATH": str(SRC)}
FEE = "contract.service_fee.share_of_value"

STACKS = {  # label: (modules imported to serve, distributions it adds to pbrsim's dependencies)
    "stdlib http.server": (["http.server"], []),
    "Starlette + uvicorn (chosen)": (["starlette.applications", "starlette.routing", "uvicorn"],
                                     ["starlette", "uvicorn", "anyio", "h11", "sniffio"]),
    "Flask (Werkzeug)": (["flask"], ["flask", "werkzeug", "itsdangerous", "blinker"]),
    "Tornado": (["tornado.web", "tornado.ioloop"], ["tornado"]),
}


def best_time(args: list[str], repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(args, env=ENV, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return min(out)


def dist_bytes(name: str) -> int | None:
    try:
        d = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    return sum((Path(d.locate_file(f)).stat().st_size for f in (d.files or []) if Path(d.locate_file(f)).exists()))


def stacks(repeat: int) -> None:
    base = best_time([sys.executable, "-c", "pass"], repeat)
    ref = best_time([sys.executable, "-c", "import numpy"], repeat) - base
    print(f"{'reference: import numpy':<32} {ref:7.3f} s")
    for label, (mods, dists) in STACKS.items():
        try:
            t = best_time([sys.executable, "-c", "import " + ", ".join(mods)], repeat) - base
        except subprocess.CalledProcessError:
            print(f"{label:<32} not installed")
            continue
        sizes = [dist_bytes(d) for d in dists]
        size = sum(s for s in sizes if s) / 2**20
        missing = [d for d, s in zip(dists, sizes) if s is None]
        print(f"{label:<32} {t:7.3f} s  ratio {t / ref:5.2f}   adds {size:5.1f} MiB on disk"
              + (f" (not installed: {', '.join(missing)})" if missing else ""))


def start_server() -> tuple[subprocess.Popen, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pbrsim", "serve", str(ROOT / "scenarios"), "--port", "0"],
                            env=ENV, stderr=subprocess.PIPE, text=True)
    url = proc.stderr.readline().split()[2]
    urllib.request.urlopen(url + "api/scenarios").read()
    return proc, url, time.perf_counter() - t0


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req).read())


def page_load(url: str, repeat: int) -> None:
    def fetch_all():
        t0 = time.perf_counter()
        for path in ("", "static/app.js", "static/app.css", "api/scenarios"):
            urllib.request.urlopen(url + path).read()
        return time.perf_counter() - t0

    ref = min(fetch_all() for _ in range(repeat))
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        print(f"{'first page load':<32} skipped: chromium and chromedriver are needed (reference urllib {ref:.3f} s)")
        return
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    times = []
    for _ in range(repeat):
        opts = webdriver.ChromeOptions()
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"):
            opts.add_argument(flag)
        opts.binary_location = chromium
        d = webdriver.Chrome(service=webdriver.ChromeService(driver_bin), options=opts)
        try:
            t0 = time.perf_counter()
            d.get(url)
            WebDriverWait(d, 30, poll_frequency=0.01).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#scenario-list option"))
            times.append(time.perf_counter() - t0)
        finally:
            d.quit()
    t = statistics.median(times)
    print(f"{'first page load (Chromium)':<32} {t:7.3f} s  (goal 3.0 s: {'met' if t <= 3 else 'NOT met'})  "
          f"reference (urllib, 4 requests) {ref:.3f} s  ratio {t / ref:6.2f}")


def exact_update(url: str, repeat: int) -> None:
    from pbrsim.scenario.schema import load_scenario
    from pbrsim.web import figures

    d = post(url + "api/open", {"file": "blended_vcs.yaml"})
    sc = load_scenario(ROOT / "scenarios" / "blended_vcs.yaml")
    web, ref = [], []
    for i in range(repeat):
        share = 0.1 + 0.05 * i
        t0 = time.perf_counter()
        post(url + "api/update", {"design": d["design"], "changes": {FEE: str(share)}})
        web.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        figures.exact(sc.vary({FEE: share}))
        ref.append(time.perf_counter() - t0)
    t, r = statistics.median(web), statistics.median(ref)
    print(f"{'exact-mode update':<32} {t:7.3f} s  (goal 0.5 s: {'met' if t <= 0.5 else 'NOT met'})  "
          f"reference (in process) {r:.3f} s  ratio {t / r:6.2f}")


def run_200(url: str) -> None:
    import yaml

    from bench_pipeline import reference

    raw = yaml.safe_load((ROOT / "scenarios" / "blended_vcs.yaml").read_text())
    first = reference(raw, 200, seed=7)[0]
    d = post(url + "api/open", {"file": "blended_vcs.yaml"})
    t0 = time.perf_counter()
    job = post(url + "api/run", {"design": d["design"], "changes": {}, "seed": 7, "replications": 200})
    while job["state"] not in ("done", "failed"):
        time.sleep(0.05)
        job = json.loads(urllib.request.urlopen(url + f"api/jobs/{job['id']}").read())
    t = time.perf_counter() - t0
    second = reference(raw, 200, seed=7)[0]
    r = (first + second) / 2
    print(f"{'200 replications (blended_vcs)':<32} {t:7.3f} s  (goal 3.0 s: {'met' if t <= 3 else 'NOT met'})  "
          f"reference (numpy chain) {r:.3f} s  ratio {t / r:6.2f}   [{job['state']}]")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    stacks(args.repeat)
    proc, url, startup = start_server()
    try:
        base = best_time([sys.executable, "-c", "import numpy"], args.repeat)
        print(f"{'pbrsim serve: first answer':<32} {startup:7.3f} s  reference (python -c 'import numpy') {base:.3f} s  "
              f"ratio {startup / base:6.2f}")
        page_load(url, args.repeat)
        exact_update(url, args.repeat)
        run_200(url)
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
