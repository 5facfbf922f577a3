"""`babelmr ui`: the dashboard served by the real command, read over HTTP and in headless Chromium.

The store holds real runs made by `babelmr run`: a finished one, a failed one and one still running
(a job whose program sleeps, started in a background process). Screenshots go to ``test-artifacts/``
(or ``$BABELMR_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, write_job, write_program

ARTIFACTS = Path(os.environ.get("BABELMR_TEST_ARTIFACTS") or ROOT / "test-artifacts")
CHROMEDRIVER = "/usr/bin/chromedriver"

PROGRAM = """
import os, sys, time
import pyarrow.parquet as pq
t = pq.read_table(os.environ["MR_INPUT"])
for step in range(int(os.environ.get("STEPS", "1"))):
    print(f"reporter:status:task {os.environ['MR_TASK']} step {step}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get("SLEEP", "0")))
print(f"reporter:counter:demo,rows,{t.num_rows}", file=sys.stderr)
if os.environ.get("FAIL") == os.environ["MR_TASK"]:
    print("boom: cannot parse record 42 of task " + os.environ["MR_TASK"], file=sys.stderr)
    sys.exit(3)
value = [c for c in t.column_names if c != "k"][0]
pq.write_table(t.group_by("k").aggregate([(value, "sum")]), os.environ["MR_OUTPUT"])
"""


def _job(folder: Path, name: str, env: dict[str, str], concurrency: int | None = None) -> Path:
    stage: dict[str, Any] = {"name": "map", "command": [sys.executable, "{job_dir}/prog.py"],
                             "inputs": [{"name": "d", "uri": str(folder.parent / "data")}],
                             "split": {"files_per_task": 1}, "key": ["k"], "partitions": 2, "env": env,
                             "retries": 1}
    if concurrency:
        stage["concurrency"] = concurrency
    reduce = {"name": "reduce", "command": [sys.executable, "{job_dir}/prog.py"],
              "inputs": [{"name": "p", "stage": "map"}]}
    return write_job(folder, {"name": name, "stages": [stage, reduce]})


def _run(job: Path, store: Path | str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "babelmr", "run", str(job), "--store", str(store), "--json"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read()
        return json.loads(body) if r.headers.get_content_type() == "application/json" else body


def _start_ui(store: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "babelmr", "ui", "--store", store, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _get(url + "/api/runs")
            return proc, url
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("babelmr ui did not answer within 30 s")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def runs_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A store with a finished, a failed and a running run, and `babelmr ui` serving it."""
    root = tmp_path_factory.mktemp("ui")
    (root / "data").mkdir()
    for i in range(3):
        table = pa.table({"k": ["a", "b", "c"] * 10, "v": list(range(i, i + 30))})
        pq.write_table(table, root / "data" / f"p{i}.parquet")
    store = root / "store"
    jobs = {}
    for name, env, concurrency in (("finished", {"STEPS": "2"}, None), ("failing", {"FAIL": "1"}, None),
                                   ("slow", {"STEPS": "5", "SLEEP": "1.0"}, 1)):
        write_program(root / name, "prog.py", PROGRAM)
        jobs[name] = _job(root / name, name, env, concurrency)
    with ThreadPoolExecutor(2) as pool:  # two runs at once into one store, as users do
        finished, failed = pool.map(lambda name: _run(jobs[name], store), ["finished", "failing"])
    assert finished.returncode == 0, finished.stderr
    assert failed.returncode == 1 and "boom" in failed.stderr
    running = subprocess.Popen([sys.executable, "-m", "babelmr", "run", str(jobs["slow"]), "--store", str(store)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ui, url = _start_ui(str(store))
    try:
        yield {"url": url, "store": store, "finished": json.loads(finished.stdout), "running": running}
    finally:
        _stop(ui)
        if running.poll() is None:
            running.send_signal(signal.SIGINT)
            running.wait(timeout=30)


def test_api_lists_runs_and_shows_a_failed_task(runs_store: dict[str, Any]) -> None:
    url = runs_store["url"]
    runs = {r["job"]: r for r in _get(url + "/api/runs")["runs"]}
    assert runs["finished"]["status"] == "succeeded" and runs["failing"]["status"] == "failed"
    assert runs["finished"]["cost"]["estimate"] is True and runs["finished"]["cost"]["dollars"] > 0
    failed = _get(f"{url}/api/runs/{runs['failing']['run_id']}")
    task1 = next(t for t in failed["stages"][0]["task_rows"] if t["task"] == 1)
    assert task1["status"] == "error" and task1["attempts"] == 2 and "exited with code 3" in task1["error"]
    assert task1["attempt_list"][0]["logs"] == ["stderr"]
    log = _get(f"{url}/api/runs/{runs['failing']['run_id']}/logs/map/1/1/stderr").decode()
    assert "boom: cannot parse record 42 of task 1" in log
    assert [s["name"] for s in failed["stages"]] == ["map", "reduce"]  # reduce from the job file: never ran
    assert failed["stages"][1]["status"] == "not run"
    png = _get(f"{url}/api/runs/{runs['finished']['run_id']}/timeline.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    ok = _get(f"{url}/api/runs/{runs['finished']['run_id']}")
    assert ok["stages"][1]["upstream"] == ["map"]
    assert all(t["status_line"] == f"task {t['task']} step 1" for t in ok["stages"][0]["task_rows"])
    assert all(t["counters"] == {"demo.rows": 30} for t in ok["stages"][0]["task_rows"])


def _chrome():
    if not (shutil.which("chromium") and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (tests/run.sh installs them when run as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = _chrome()
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


@pytest.mark.browser
def test_browser_running_run_updates_live(runs_store: dict[str, Any], browser: Any) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = runs_store["url"]
    deadline = time.monotonic() + 30
    slow = None
    while slow is None and time.monotonic() < deadline:
        slow = next((r for r in _get(url + "/api/runs")["runs"] if r["job"] == "slow"), None)
        time.sleep(0.2)
    assert slow is not None, "the background run never wrote its record"
    browser.get(f"{url}/runs/{slow['run_id']}")
    stale = (StaleElementReferenceException,)  # elements of a polling page are replaced every 1.5 s

    def map_done(d: Any) -> int | None:
        # read in one script: the page re-renders while it polls, so a found element can go stale
        done = d.execute_script("const g = document.querySelector(\"#dag g.stage[data-stage='map']\");"
                                "return g ? g.getAttribute('data-done') : null")
        return None if done is None else int(done)

    WebDriverWait(browser, 20).until(lambda d: map_done(d) is not None)
    first = map_done(browser)
    assert first is not None and first < 3, "the run finished its map stage before the page could watch it"
    assert "running" in browser.execute_script("return document.querySelector('h1').textContent")
    # the running task's latest status line shows while it runs
    WebDriverWait(browser, 60, ignored_exceptions=stale).until(lambda d: any(
        "step" in e.text for e in d.find_elements(By.CSS_SELECTOR, "tr[data-status='running'] td.statusline")),
        message="no running task showed a status line")
    _shot(browser, "dashboard-running-run")
    # the page polls: progress grows without a reload
    # generous bounds: on a loaded machine each task of the slow job can take several times its 5 s
    WebDriverWait(browser, 120).until(lambda d: (map_done(d) or 0) > first,
                                      message=f"the map stage's progress stayed at {first}/3 on the page")
    WebDriverWait(browser, 180).until(
        lambda d: "succeeded" in d.execute_script("return document.querySelector('h1').textContent"),
        message="the page never showed the run as succeeded")
    _shot(browser, "dashboard-running-run-finished")


@pytest.mark.browser
def test_browser_runs_list_and_failed_task(runs_store: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    browser.get(runs_store["url"] + "/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#runs tr[data-run]")))
    rows = {r.find_elements(By.TAG_NAME, "td")[1].text: r
            for r in browser.find_elements(By.CSS_SELECTOR, "#runs tr[data-run]")}
    assert {"finished", "failing", "slow"} <= set(rows)
    assert rows["finished"].get_attribute("data-status") == "succeeded"
    assert rows["failing"].get_attribute("data-status") == "failed"
    assert "$" in rows["finished"].text and "local" in rows["finished"].text
    _shot(browser, "dashboard-runs")

    rows["failing"].find_element(By.TAG_NAME, "a").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.tasks tr[data-task='1']")))
    failed_row = browser.find_element(By.CSS_SELECTOR, "table.tasks[data-stage='map'] tr[data-task='1']")
    assert failed_row.get_attribute("data-status") == "error"
    errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "pre.error")]
    assert any("exited with code 3" in e and "boom: cannot parse record 42" in e for e in errors)
    failed_row.find_element(By.CSS_SELECTOR, "a.log[data-stream='stderr'][data-attempt='2']").click()
    log = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "pre.log[data-log='map/1/2/stderr']")))
    assert "boom: cannot parse record 42 of task 1" in log.text
    stage = browser.find_element(By.CSS_SELECTOR, "#dag g.stage[data-stage='map']")
    assert "failed" in stage.text
    _shot(browser, "dashboard-failed-run")


@pytest.mark.browser
def test_browser_finished_run_shows_timeline_and_cost(runs_store: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    record = runs_store["finished"]
    browser.get(f"{runs_store['url']}/runs/{record['run_id']}")
    img = WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#timeline img")))
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "const i = document.querySelector('#timeline img'); return i.complete && i.naturalWidth > 0"))
    assert img.get_attribute("naturalWidth") not in (None, "0")
    cost = browser.find_element(By.ID, "cost").text
    assert "this run on Lambda at 2048 MB would cost" in cost and "us-east-1" in cost
    dag = {g.get_attribute("data-stage"): g for g in browser.find_elements(By.CSS_SELECTOR, "#dag g.stage")}
    assert dag["map"].get_attribute("data-done") == "3" and dag["reduce"].get_attribute("data-done") == "2"
    assert "task 0 step 1" in browser.find_element(By.CSS_SELECTOR, "table.tasks[data-stage='map']").text
    _shot(browser, "dashboard-finished-run")


@pytest.mark.s3
def test_dashboard_reads_an_s3_store(tmp_path: Path, s3_prefix: str) -> None:
    """The same API over a store on the real SeaweedFS S3 server (the AWS settings are in os.environ)."""
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"k": ["a", "b"], "v": [1, 2]}), tmp_path / "data" / "p.parquet")
    write_program(tmp_path / "job", "prog.py", PROGRAM)
    job = _job(tmp_path / "job", "ons3", {"STEPS": "1", "FAIL": "7"})
    done = _run(job, s3_prefix)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    ui, url = _start_ui(s3_prefix)
    try:
        runs = _get(url + "/api/runs")["runs"]
        assert [r["run_id"] for r in runs] == [run_id] and runs[0]["status"] == "succeeded"
        view = _get(f"{url}/api/runs/{run_id}")
        assert view["store"] == s3_prefix and view["stages"][0]["task_rows"][0]["status_line"] == "task 0 step 0"
        assert _get(f"{url}/api/runs/{run_id}/timeline.png")[:4] == b"\x89PNG"
        assert "reporter:counter:demo,rows,2" in _get(f"{url}/api/runs/{run_id}/logs/map/0/1/stderr").decode()
    finally:
        _stop(ui)
