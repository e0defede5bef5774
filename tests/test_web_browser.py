"""Acceptance of the explorer in real headless Chromium (Debian's chromium and chromedriver): open the app, load
blended_vcs, set the service-fee share from 0.30 to 0, run 200 replications with seed 7, and find on the page the
failure probability and outcome rate `pbrsim run --seed 7 -n 200` gives for the downloaded YAML, which validates;
the browser asks nothing of any address but the app's own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner

from pbrsim.cli.main import main
from pbrsim.model.money import interval

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FEE = "contract.service_fee.share_of_value"

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="Chromium or chromedriver is not installed (Debian packages `chromium` and `chromium-driver`; "
                              ".ci/run installs them)"),
]


@pytest.fixture(scope="module")
def server():
    """`pbrsim serve scenarios --port 0` in its own process; the address it prints."""
    pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install 'pbrsim[web]')")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "pbrsim", "serve", str(ROOT / "scenarios"), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stderr.readline()
        assert "http://127.0.0.1:" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
        url = line.split()[2]
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (in the test extra) is not installed")
    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1300,2400",
                 f"--user-data-dir={tmp_path_factory.mktemp('profile')}"):
        opts.add_argument(flag)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def until(driver, test, timeout=60):
    """Wait for ``test``; an element replaced while it was read (the page redraws figures as they arrive) is read again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=[StaleElementReferenceException]).until(lambda d: test(d))


def start_run(d, seed: int, replications: int) -> None:
    """Type the seed and the number of replications into the page and press Run."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    for field, value in (("seed", seed), ("replications", replications)):
        box = d.find_element(By.ID, field)
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(str(value))
    d.find_element(By.ID, "run").click()


def test_acceptance_fee_share_zero_matches_pbrsim_run_and_stays_on_this_machine(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    d = browser
    d.get("about:blank")
    d.get_log("performance")  # what the browser's own new-tab page loaded before the test: not the app's
    d.get(server)
    until(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#scenario-list option"))
    Select(d.find_element(By.ID, "scenario-list")).select_by_value("blended_vcs.yaml")
    d.find_element(By.ID, "open-button").click()
    until(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#exact-headline .figure"))
    fee = d.find_element(By.CSS_SELECTOR, f'input[data-path="{FEE}"]')
    assert fee.get_attribute("value") == "0.3"
    before = d.find_element(By.CSS_SELECTOR, '#exact-headline [data-figure="paid_total"]').get_attribute("data-value")
    # a value the schema refuses is named beside the form, with the rule, and nothing is updated
    fee.send_keys(Keys.CONTROL, "a")
    fee.send_keys("1.5", Keys.TAB)
    until(d, lambda d: d.find_element(By.ID, "problems").is_displayed())
    problems = d.find_element(By.ID, "problems").text
    assert f"{FEE}: " in problems and "fraction" in problems
    assert "invalid" in d.find_element(By.CSS_SELECTOR, f'.lever[data-path="{FEE}"]').get_attribute("class")
    fee.send_keys(Keys.CONTROL, "a")
    fee.send_keys("0", Keys.TAB)
    # the expected values follow at once (exact mode): the commissioner pays less without the fee
    until(d, lambda d: d.find_element(By.CSS_SELECTOR, '#exact-headline [data-figure="paid_total"]').get_attribute("data-value") != before)
    assert not d.find_element(By.ID, "problems").is_displayed()

    start_run(d, 7, 200)
    until(d, lambda d: d.find_elements(By.CSS_SELECTOR, '#mc-headline [data-figure="failure_probability"]'), timeout=120)
    head = d.find_element(By.ID, "mc-headline")
    assert head.get_attribute("data-seed") == "7" and head.get_attribute("data-replications") == "200"
    shown = {}
    for fid in ("failure_probability", "outcome_rate"):
        box = d.find_element(By.CSS_SELECTOR, f'#mc-headline [data-figure="{fid}"]')
        shown[fid] = (float(box.get_attribute("data-value")), box.find_element(By.CSS_SELECTOR, ".text").text)
    charts = {e.get_attribute("data-chart") for e in d.find_elements(By.CSS_SELECTOR, "#mc-charts [data-chart]")}
    assert {"failure", "outcomes", "parking", "spend"} <= charts and any(c.startswith("cash-") for c in charts)
    assert len(d.find_elements(By.CSS_SELECTOR, "#mc-charts svg")) == len(charts)

    # download the edited design; it validates, and pbrsim run on it gives the page's figures
    d.find_element(By.ID, "download-yaml").click()
    path = d.downloads / "blended_vcs.yaml"
    until(d, lambda _: path.exists() and path.stat().st_size > 0, timeout=30)
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 0 and "OK" in r.output, r.output
    r = CliRunner().invoke(main, ["run", str(path), "--seed", "7", "-n", "200", "--json", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    fail = s["organisations"][0]["ran_out_of_cash"]
    rate = next(x for x in s["segments"] if x["segment"] == "all")["outcome_rate"]
    assert shown["failure_probability"] == (fail["mean"], interval(fail))
    assert shown["outcome_rate"] == (rate["mean"], interval(rate))
    assert s["commissioner"]["service_fee_share_of_value"] == 0

    # every request the browser made went to the app itself
    urls = []
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert urls
    elsewhere = [u for u in urls if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname != "127.0.0.1"]
    assert elsewhere == [], elsewhere
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
    assert errors == [], errors


def test_a_graded_provider_stays_graded_on_the_page_and_its_strength_is_a_lever(server, browser, tmp_path):
    """The refitted archetypes' providers follow a graded policy: opening one changes nothing (no lever marked as
    changed, a run equal to `pbrsim run` on the file), and the policy's strength is a lever of its own."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    d = browser
    d.get(server)
    until(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#scenario-list option"))
    Select(d.find_element(By.ID, "scenario-list")).select_by_value("library/small_vcs_blended.yaml")
    d.find_element(By.ID, "open-button").click()
    until(d, lambda d: d.find_elements(By.CSS_SELECTOR, 'select[data-path="provider.policy"]'))
    assert Select(d.find_element(By.CSS_SELECTOR, 'select[data-path="provider.policy"]')).first_selected_option.get_attribute("value") == "graded"
    temp = d.find_element(By.CSS_SELECTOR, 'input[data-path="provider.policy.temperature"]')
    assert float(temp.get_attribute("value")) == 50.0
    start_run(d, 5, 8)
    until(d, lambda d: d.find_elements(By.CSS_SELECTOR, '#mc-headline[data-seed="5"] [data-figure="outcome_rate"]'), timeout=120)
    assert d.find_elements(By.CSS_SELECTOR, "#levers .lever.changed") == []
    shown = float(d.find_element(By.CSS_SELECTOR, '#mc-headline [data-figure="outcome_rate"]').get_attribute("data-value"))
    r = CliRunner().invoke(main, ["run", str(ROOT / "scenarios" / "library" / "small_vcs_blended.yaml"), "--seed", "5", "-n", "8",
                                  "--json", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    rate = next(x for x in json.loads(r.output)["segments"] if x["segment"] == "all")["outcome_rate"]
    assert shown == rate["mean"]
    # a more tolerant provider is a change the page sends, and the expected values or the note follow it
    temp.send_keys(Keys.CONTROL, "a")
    temp.send_keys("500", Keys.TAB)
    until(d, lambda d: "changed" in d.find_element(By.CSS_SELECTOR, '.lever[data-path="provider.policy.temperature"]').get_attribute("class"))
    assert not d.find_element(By.ID, "problems").is_displayed()
