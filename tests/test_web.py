"""The explorer's server (`pbrsim serve`): levers checked by the scenario schema, exact values at once, jobs whose
figures are the command line's, downloads that validate, uploads read as safely as files, a server that answers
while simulations run and stays consistent under concurrent requests, and one line without the web extra."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("starlette", reason="the web extra is not installed (pip install 'pbrsim[web]')")
pytest.importorskip("httpx", reason="httpx (in the test extra) is needed by Starlette's test client")

with warnings.catch_warnings():  # Starlette's notice that its test client will move from httpx to httpx2
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient  # noqa: E402

from pbrsim.cli.main import main  # noqa: E402
from pbrsim.model.money import interval, money  # noqa: E402
from pbrsim.scenario.schema import load_scenario  # noqa: E402
from pbrsim.web import figures  # noqa: E402
from pbrsim.web.app import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
FEE = "contract.service_fee.share_of_value"
HOLDER = "community_links_style_charity"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(SCENARIOS), base_url="http://127.0.0.1") as c:
        yield c


def opened(client, name="blended_vcs.yaml") -> dict:
    r = client.post("/api/open", json={"file": name})
    assert r.status_code == 200, r.text
    return r.json()


def wait(client, job: dict, timeout: float = 120) -> dict:
    end = time.monotonic() + timeout
    while job["state"] not in ("done", "failed"):
        assert time.monotonic() < end, job
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{job['id']}").json()
    assert job["state"] == "done", job["error"]
    return job


def test_page_and_assets_are_served_with_nothing_from_elsewhere(client):
    page = client.get("/").text
    assert "pbrsim explorer" in page
    for asset in ("/static/app.js", "/static/app.css"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.text) > 1000
    js = client.get("/static/app.js").text
    # no address beyond this server in the page or its script (charts are drawn by the script itself)
    for text in (page, js):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text and "//cdn" not in text
    assert client.get("/static/../designs.py").status_code == 404


def test_levers_cover_the_contract_and_the_provider(client):
    d = opened(client)
    paths = {lv["path"]: lv for lv in d["levers"]}
    assert paths[FEE]["value"] == 0.3 and paths[FEE]["kind"] == "share"
    for p in ("contract.cap", "contract.service_fee.lag", "contract.payments[name=sustained_job].tariff.complex",
              "contract.payments[name=job_start].lag", "provider.opening_cash", "provider.credit.limit", "provider.policy",
              "referrals.rate"):
        assert p in paths, p
    chain = opened(client, "supply_chain/blended.yaml")
    assert any(".terms.pass_through." in lv["path"] for lv in chain["levers"])  # subcontract terms


def test_a_bad_lever_gets_the_schema_message_naming_file_field_and_rule(client):
    d = opened(client)
    r = client.post("/api/update", json={"design": d["design"], "changes": {FEE: "1.5"}})
    assert r.status_code == 422
    body = r.json()
    assert body["source"] == "blended_vcs.yaml (as edited)"
    assert body["problems"][0]["path"] == FEE and "fraction" in body["problems"][0]["rule"]
    r = client.post("/api/update", json={"design": d["design"], "changes": {"contract.service_fee.share_of_valu": 0.2}})
    assert r.status_code == 422 and "did you mean 'share_of_value'" in r.text
    assert client.post("/api/update", json={"design": "nope", "changes": {}}).status_code == 400
    assert client.post("/api/update", content=b"{not json").status_code == 400


def test_expected_values_are_exact_mode_with_what_binds_set_aside(client):
    d = opened(client)
    body = client.post("/api/update", json={"design": d["design"], "changes": {FEE: "0"}}).json()
    ex = body["exact"]
    assert ex["applies"] and "the contract cap" in ex["set_aside"] and ex["reasons"]
    # the same expected values as exact mode of the design with capacity, overdraft and cap removed by hand
    from pbrsim.engine.exact import expected

    sc = load_scenario(SCENARIOS / "blended_vcs.yaml")
    plain = sc.vary({FEE: 0, "provider.capacity": None, "provider.credit": {"limit": None, "monthly_interest": 0}, "contract.cap": None})
    want = expected(plain).summary()
    got = {f["id"]: f["value"] for f in ex["headline"]}
    assert got["paid_total"] == pytest.approx(want["commissioner"]["paid_total"], rel=1e-12)
    assert got["outcome_rate"] == pytest.approx(next(s for s in want["segments"] if s["segment"] == "all")["outcome_rate"], rel=1e-12)
    # a design exact mode takes as it stands is not relaxed
    boilers = opened(client, "early_action/boilers_on_prescription.yaml")
    ex = client.post("/api/update", json={"design": boilers["design"], "changes": {}}).json()["exact"]
    assert ex["applies"] and ex["set_aside"] == []
    # and one it cannot take says why
    parking = opened(client, "parking/outcome_only.yaml")
    ex = client.post("/api/update", json={"design": parking["design"], "changes": {}}).json()["exact"]
    assert not ex["applies"] and any("return_maximising" in r for r in ex["reasons"])


def test_a_run_shows_the_figures_pbrsim_run_prints_for_the_downloaded_yaml(client, tmp_path):
    d = opened(client)
    changes = {FEE: "0", "contract.payments[name=sustained_job].lag": "3"}
    r = client.post("/api/yaml", json={"design": d["design"], "changes": changes})
    assert r.status_code == 200 and 'filename="blended_vcs.yaml"' in r.headers["content-disposition"]
    path = tmp_path / "edited.yaml"
    path.write_text(r.text)
    v = CliRunner().invoke(main, ["validate", str(path)])
    assert v.exit_code == 0 and "OK" in v.output, v.output
    job = wait(client, client.post("/api/run", json={"design": d["design"], "changes": changes, "seed": 3, "replications": 12}).json())
    page = {f["id"]: f for f in job["result"]["headline"]}
    cli = CliRunner().invoke(main, ["run", str(path), "--seed", "3", "-n", "12", "--json", "--out", str(tmp_path / "run")])
    assert cli.exit_code == 0, cli.output
    s = json.loads(cli.output)
    rate = next(x for x in s["segments"] if x["segment"] == "all")["outcome_rate"]
    fail = s["organisations"][0]["ran_out_of_cash"]
    assert page["outcome_rate"]["value"] == rate["mean"] and page["outcome_rate"]["text"] == interval(rate)
    assert page["failure_probability"]["value"] == fail["mean"] and page["failure_probability"]["text"] == interval(fail)
    assert page["paid_total"]["text"] == interval(s["commissioner"]["paid_total"], money)
    charts = {c["id"] for c in job["result"]["charts"]}
    assert {f"cash-{HOLDER}", "failure", "outcomes", "parking", "spend"} <= charts
    fan = next(c for c in job["result"]["charts"] if c["type"] == "fan")
    assert len(fan["months"]) == len(fan["table"]["rows"]) and all(
        a <= b <= c for a, b, c in zip(fan["quantiles"]["p5"], fan["quantiles"]["p50"], fan["quantiles"]["p95"]))

    # the report and the spreadsheet of that run
    rep = client.get(f"/api/jobs/{job['id']}/report.html")
    assert rep.status_code == 200 and rep.text.count("<img ") >= 3 and "blended_vcs" in rep.text
    xl = client.get(f"/api/jobs/{job['id']}/pbrsim.xlsx")
    assert xl.status_code == 200 and xl.content[:2] == b"PK"
    import io

    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(xl.content), read_only=True)
    assert len(book.sheetnames) >= 3


def test_bad_run_settings_are_refused_before_anything_runs(client):
    d = opened(client)
    r = client.post("/api/run", json={"design": d["design"], "changes": {}, "seed": -1, "replications": 0})
    assert r.status_code == 422
    assert {p["path"] for p in r.json()["problems"]} == {"seed", "replications"}


def test_compare_stress_and_goal_seek_run_as_the_python_api_does(client):
    import pbrsim

    d = opened(client)
    sc = load_scenario(SCENARIOS / "blended_vcs.yaml")
    job = wait(client, client.post("/api/compare", json={"seed": 1, "replications": 8, "designs": [
        {"design": d["design"], "changes": {}, "label": "as bid"},
        {"design": d["design"], "changes": {FEE: "0.5"}, "label": "fee 50%"}]}).json())
    res = job["result"]
    assert res["designs"] == ["as bid", "fee 50%"]
    want = pbrsim.compare({"as bid": sc, "fee 50%": sc.vary({FEE: 0.5})}, seed=1, replications=8).table()
    row = want[(want.design == "fee 50%") & (want.figure == "paid_total")].iloc[0]
    spend = next(r for r in res["table"]["rows"] if r[0] == row["label"])
    assert spend[2] == (f"{interval({'mean': row['mean'], 'lo': row['lo'], 'hi': row['hi']}, money)}; difference "
                        f"+{interval({'mean': row['diff'], 'lo': row['diff_lo'], 'hi': row['diff_hi']}, money)}")
    assert client.post("/api/compare", json={"designs": [{"design": d["design"]}] * 5}).status_code == 400

    job = wait(client, client.post("/api/stress", json={"design": d["design"], "changes": {}, "seed": 2, "replications": 8,
                                                        "only": ["delay_3"]}).json())
    rows = job["result"]["table"]["rows"]
    assert [r[0] for r in rows] == ["Unstressed base (the bid as submitted)", "Every payment 3 months later"]
    assert client.post("/api/stress", json={"design": d["design"], "only": ["no_such"]}).status_code == 422

    job = wait(client, client.post("/api/goalseek", json={"design": d["design"], "changes": {}, "seed": 2, "replications": 10,
                                                          "lever": FEE, "target": f"failure({HOLDER}) <= 0.5"}).json())
    gs = job["result"]
    assert gs["status"] in ("found", "met_everywhere", "not_met") and gs["table"]["rows"]
    if gs["status"] == "found":
        met = [float(r[0]) for r in gs["table"]["rows"] if r[2] == "met"]
        assert gs["answer"] == min(met)


def test_uploads_get_the_same_safe_loading_and_limits_as_files(client):
    ok = client.post("/api/upload", content=(SCENARIOS / "blended_vcs.yaml").read_bytes(), headers={"X-Filename": "mine.yaml"})
    assert ok.status_code == 200 and ok.json()["source"] == "upload: mine.yaml"
    cases = [
        (b"a: [1, 2", "not valid YAML"),
        (b"\xff\xfe bad", "UTF-8"),
        (b"extends: blended_vcs.yaml\nname: x\n", "cannot extend"),
        ((ROOT / "tests" / "fixtures" / "valid_small.yaml").read_bytes().replace(b"months:", b"monthz:"), "monthz"),
        (b"x: &a [1]\n" + b"".join(b"y%d: *a\n" % i for i in range(3)) + b"base: b.yaml\ndesigns: []\n", "experiment"),
        (b"#" * (2 * 1024 * 1024), "at most"),
    ]
    for data, words in cases:
        r = client.post("/api/upload", content=data, headers={"X-Filename": "up.yaml"})
        assert r.status_code == 422, (words, r.text[:300])
        assert words in r.text, (words, r.text[:300])
    # only the files listed from the folder can be opened by name
    for name in ("../pyproject.toml", "/etc/passwd", "stress/blended_vcs_stresses.yaml"):
        assert client.post("/api/open", json={"file": name}).status_code == 422


def test_other_host_names_are_refused(client):
    assert client.get("/api/scenarios", headers={"Host": "attacker.example"}).status_code == 400


def serve_in_thread(folder: Path):
    """A real uvicorn server on a free port, in a thread of this process (stopped by the caller)."""
    import uvicorn

    from pbrsim.web.server import bind

    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(create_app(folder, workers=2), log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_concurrent_requests_never_mix_designs_or_jobs():
    import httpx

    server, thread, url = serve_in_thread(SCENARIOS)
    try:
        shares = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
        sc = load_scenario(SCENARIOS / "blended_vcs.yaml")

        def one(share):
            with httpx.Client(base_url=url, timeout=60) as c:
                d = c.post("/api/open", json={"file": "blended_vcs.yaml"}).json()
                ex = c.post("/api/update", json={"design": d["design"], "changes": {FEE: str(share)}}).json()["exact"]
                job = c.post("/api/run", json={"design": d["design"], "changes": {FEE: str(share)}, "seed": 5,
                                               "replications": 4}).json()
                while job["state"] not in ("done", "failed"):
                    time.sleep(0.02)
                    job = c.get(f"/api/jobs/{job['id']}").json()
                return d["design"], ex, job

        with ThreadPoolExecutor(len(shares)) as pool:
            results = list(pool.map(one, shares))
        assert len({r[0] for r in results}) == len(shares)  # every open got its own design
        assert len({r[2]["id"] for r in results}) == len(shares)
        for share, (_, ex, job) in zip(shares, results):
            want = figures.exact(sc.vary({FEE: share}))
            assert {f["id"]: f["text"] for f in ex["headline"]} == {f["id"]: f["text"] for f in want["headline"]}, share
            assert job["state"] == "done", job["error"]
            import pbrsim

            serial = figures.montecarlo(pbrsim.simulate(sc.vary({FEE: share}), seed=5, replications=4))
            assert job["result"]["headline"] == serial["headline"], share

        # the server answers while a long run is going: the job is seen part-way, not only when done
        with httpx.Client(base_url=url, timeout=60) as c:
            d = c.post("/api/open", json={"file": "blended_vcs.yaml"}).json()
            job = c.post("/api/run", json={"design": d["design"], "changes": {}, "seed": 1, "replications": 400}).json()
            seen = []
            while job["state"] not in ("done", "failed"):
                job = c.get(f"/api/jobs/{job['id']}").json()
                assert c.get("/api/scenarios").status_code == 200
                seen.append((job["state"], job["done"]))
            assert any(state == "running" for state, _ in seen), seen
            assert job["state"] == "done"
    finally:
        server.should_exit = True
        thread.join(10)


def test_serve_without_the_web_extra_says_what_to_install():
    code = "import sys; sys.modules['uvicorn'] = None; from pbrsim.cli.main import main; main(['serve'])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "pip install 'pbrsim[web]'" in lines[0], r.stderr


def test_public_value_and_investor_charts_appear_where_the_scenario_has_them(client):
    for name, chart in (("early_action/boilers_on_prescription.yaml", "value"), ("library/fcf_aspire.yaml", "investor")):
        d = opened(client, name)
        job = wait(client, client.post("/api/run", json={"design": d["design"], "changes": {}, "seed": 1, "replications": 3}).json())
        charts = {c["id"]: c for c in job["result"]["charts"]}
        assert chart in charts, name
        assert all(b["mean"] is not None for b in charts[chart]["bars"][:1])
    # a per-client cap is set aside for the expected values, and said so
    d = opened(client, "library/troubled_families.yaml")
    ex = client.post("/api/update", json={"design": d["design"], "changes": {}}).json()["exact"]
    assert ex["applies"] and "the cap per client" in ex["set_aside"]


def test_jobs_are_bounded_and_only_the_latest_keep_their_tables():
    from pbrsim.web import jobs as jobs_mod

    jobs = jobs_mod.Jobs(workers=2)
    gate = threading.Event()

    def blocked(job, progress):
        gate.wait(30)
        job.keep["result"] = object()
        progress(1)
        return {"ok": True}

    try:
        started = [jobs.submit("run", 1, blocked) for _ in range(jobs_mod.MAX_WAITING)]
        with pytest.raises(jobs_mod.Busy):
            jobs.submit("run", 1, blocked)
        gate.set()
        end = time.monotonic() + 30
        while any(jobs.view(j.id)["state"] != "done" for j in started):
            assert time.monotonic() < end
            time.sleep(0.01)
        kept = [j for j in started if jobs.get(j.id).keep]
        assert len(kept) == jobs_mod.MAX_KEPT and kept == started[-jobs_mod.MAX_KEPT:]
        assert all(jobs.view(j.id)["result"] == {"ok": True} for j in started)
    finally:
        jobs.shutdown()


def test_serve_refuses_a_missing_folder_and_a_taken_port_in_one_line(tmp_path):
    from pbrsim.web.server import bind

    r = CliRunner().invoke(main, ["serve", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "no such folder" in r.output
    taken = bind("127.0.0.1", 0)
    try:
        r = CliRunner().invoke(main, ["serve", str(SCENARIOS), "--port", str(taken.getsockname()[1])])
        assert r.exit_code == 2 and "choose another with --port" in r.output, r.output
    finally:
        taken.close()


def test_a_run_with_latent_classes_shows_parking_by_class_as_the_summary_gives_it(client, tmp_path):
    d = opened(client, "library/small_vcs_blended.yaml")
    job = wait(client, client.post("/api/run", json={"design": d["design"], "changes": {}, "seed": 4, "replications": 6}).json())
    chart = next(c for c in job["result"]["charts"] if c["id"] == "parking-classes")
    cli = CliRunner().invoke(main, ["run", str(SCENARIOS / "library" / "small_vcs_blended.yaml"), "--seed", "4", "-n", "6", "--json",
                                    "--out", str(tmp_path / "run")])
    assert cli.exit_code == 0, cli.output
    classes = json.loads(cli.output)["parking"]["classes"]
    assert [b["label"] for b in chart["bars"]] == [f"{c['segment']}: {c['latent_class']}" for c in classes]
    assert [b["mean"] for b in chart["bars"]] == [c["parking_rate"]["mean"] for c in classes]
    assert [r[1] for r in chart["table"]["rows"]] == [interval(c["parking_rate"]) for c in classes]
