"""The MLflow UI on the CI-scale pipeline's store, started as ``make ui`` starts it.

REST: runs filtered by tags come back in the numbers ``params.yaml`` implies, and their
artifacts are served. Browser: a headless Debian Chromium types a noise-level filter into the
runs page and sees exactly that level's runs. ``MEDRAN_UPDATE_SCREENSHOTS=1`` also writes the
screenshot to ``docs/images/mlflow-compare.png`` (shown in the README).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from medran.contracts import registered_model_name
from tests.pipeline.conftest import ROOT, Repo

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "docs" / "images" / "mlflow-compare.png"
WINDOW = (1600, 1000)
STARTUP_TIMEOUT_S = 90
PAGE_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:  # not listening yet (URLError and connection resets are OSErrors)
            pass
        time.sleep(0.5)
    state = f"exited {server.returncode}" if server.poll() is not None else "still starting"
    pytest.fail(
        f"mlflow server at {url} not healthy within {STARTUP_TIMEOUT_S}s ({state}); "
        f"its log {log}:\n{log.read_text()[-3000:]}"
    )


def stop_group(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group (mlflow and its uvicorn worker), then SIGKILL
    whatever is left, so no server outlives the test."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            server.poll()  # reap the leader so the group can empty
            try:
                os.killpg(server.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    server.wait(timeout=5)


@pytest.fixture(scope="module")
def ui_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow-ui") / "server.log"


@pytest.fixture(scope="module")
def ui_url(built_repo: Repo, ui_log: Path) -> Iterator[str]:
    """``python -m medran.ui`` (what ``make ui`` runs) in the built repo, on a free port."""
    port, log = free_port(), ui_log
    env = {k: v for k, v in built_repo.env.items() if k != "MLFLOW_TRACKING_URI"}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "medran.ui", "--port", str(port)],
            cwd=built_repo.path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log)
        yield url
    finally:
        stop_group(server)


def api(url: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET (``body`` None, query in ``endpoint``) or POST JSON to ``/api/2.0/mlflow/...``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{endpoint}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def experiment_id(url: str, repo: Repo) -> str:
    query = urllib.parse.urlencode({"experiment_name": repo.params()["experiment"]})
    return api(url, f"experiments/get-by-name?{query}")["experiment"]["experiment_id"]


def search(url: str, experiment: str, filter_string: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    body: dict[str, Any] = {"experiment_ids": [experiment], "filter": filter_string}
    while True:
        page = api(url, "runs/search", body | {"max_results": 1000})
        runs += page.get("runs", [])
        if not page.get("next_page_token"):
            return runs
        body["page_token"] = page["next_page_token"]


def names(runs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(run["info"]["run_name"] for run in runs)


def expected_runs(params: dict[str, Any], level: str, method: str | None = None) -> Counter[str]:
    """Run names per level: one pretrain and one eval_upstream run; per task, method and seed
    a finetune run and an eval_robust run of the trained model under the preset; at the
    calibration level, per task and method two calibrate_robust runs of the first seed (the
    preset and the full one) unless the preset is the full one."""
    finetune, preset = params["finetune"], params["eval_robust"]["preset"]
    methods = [m for m in finetune["methods"] if method in (None, m)]
    calibrated = float(level) == params["calibrate_robust"]["level"] and preset != "full"
    runs: Counter[str] = Counter()
    if method is None:
        runs.update({f"pretrain@{level}": 1, f"eval_upstream@{level}": 1})
    for task in finetune["tasks"]:
        for m in methods:
            for seed in finetune["seeds"]:
                runs[f"finetune@{level}-{task}-{m} seed{seed}"] += 1
                runs[f"eval_robust@{level} {task}-{m} seed{seed} {preset}"] += 1
            first = finetune["seeds"][0]
            for name in (preset, "full") if calibrated else ():
                runs[f"calibrate_robust {task}-{m} seed{first} {name}"] += 1
    return runs


def levels(repo: Repo) -> list[str]:
    return [repr(float(level)) for level in repo.params()["noise_levels"]]


def test_runs_filtered_by_tags_match_params(ui_url: str, built_repo: Repo) -> None:
    experiment, params = experiment_id(ui_url, built_repo), built_repo.params()
    assert len(levels(built_repo)) >= 2  # otherwise "the other level" below checks nothing
    for level in levels(built_repo):
        runs = search(ui_url, experiment, f"tags.noise_level = '{level}'")
        assert names(runs) == expected_runs(params, level), level
        assert {run["info"]["status"] for run in runs} == {"FINISHED"}, level
        ran = search(ui_url, experiment, f"tags.noise_level = '{level}' and tags.method = 'ran'")
        assert names(ran) == expected_runs(params, level, "ran"), level
    # One `dvc repro` built the store: every run carries its one pipeline_run tag.
    every = search(ui_url, experiment, "")
    groups = {
        tag["value"] for run in every for tag in run["data"]["tags"] if tag["key"] == "pipeline_run"
    }
    assert len(groups) == 1
    (group,) = groups
    assert len(search(ui_url, experiment, f"tags.pipeline_run = '{group}'")) == len(every)


def test_models_are_registered_and_their_artifacts_served(ui_url: str, built_repo: Repo) -> None:
    """Each level's pre-trained CLIP and each task x method on it is a registered MLflow Model
    whose version points at the stage's run; the UI serves the model's files."""
    params, experiment = built_repo.params(), experiment_id(ui_url, built_repo)
    finetune = params["finetune"]
    expected = {
        registered_model_name(float(level), *item)
        for level in levels(built_repo)
        for item in [(None, None)]
        + [(t, m) for t in finetune["tasks"] for m in finetune["methods"]]
    }
    registered = api(ui_url, "registered-models/search?max_results=1000")["registered_models"]
    assert {model["name"] for model in registered} == expected
    level = levels(built_repo)[-1]
    (run,) = search(ui_url, experiment, f"tags.stage = 'pretrain@{level}'")
    query = urllib.parse.urlencode({"filter": f"name = '{registered_model_name(float(level))}'"})
    (version,) = api(ui_url, f"model-versions/search?{query}")["model_versions"]
    assert version["run_id"] == run["info"]["run_id"]
    model_id = version["source"].removeprefix("models:/")
    query = urllib.parse.urlencode(
        {"artifact_file_path": f"artifacts/{level}/open_clip_config.json"}
    )
    files = f"{ui_url}/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files?{query}"
    with urllib.request.urlopen(files, timeout=30) as response:
        assert "model_cfg" in json.loads(response.read())


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.skip(
            f"browser check needs {' and '.join(missing)} (Debian packages chromium, "
            "chromium-driver; `make browser` installs them as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        # The viewport itself, not the window around it, so screenshots are WINDOW in size.
        width, height = WINDOW
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        yield driver
    finally:
        driver.quit()


def listed_runs(driver: webdriver.Chrome, experiment: str) -> dict[str, str]:
    """Run id -> run name of the rows the runs table shows (run names link to the run).

    Read in one script call: the table re-renders while it loads, which would make element
    handles fetched one by one go stale in between."""
    links = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(a => [a.getAttribute('href'), a.textContent])",
        f"a[href^='#/experiments/{experiment}/runs/']",
    )
    return {href.rsplit("/", 1)[-1]: name for href, name in links}


def filter_runs(driver: webdriver.Chrome, experiment: str, text: str, expected: set[str]) -> None:
    """Type ``text`` into the runs search box as a user would and wait until the table lists
    exactly the runs ``expected`` (ids) and says how many match."""
    box = driver.find_element(By.CSS_SELECTOR, "input[data-testid='search-box']")
    # select-all + delete: clear() leaves React's copy of a controlled input's value behind
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE, text)
    assert box.get_attribute("value") == text
    box.send_keys(Keys.ENTER)
    footer = f"{len(expected)} matching runs"
    try:
        WebDriverWait(driver, PAGE_TIMEOUT_S).until(
            lambda d: (
                set(listed_runs(d, experiment)) == expected
                and footer in d.find_element(By.TAG_NAME, "body").text
            )
        )
    except TimeoutException:
        listed = sorted(listed_runs(driver, experiment).values())
        pytest.fail(f"filter {text!r}: the runs table lists {listed}, not {footer}")
    # The UI keeps the filter in the page's URL, so the filtered view can be bookmarked.
    query = urllib.parse.urlsplit(driver.current_url).fragment.partition("?")[2]
    assert urllib.parse.parse_qs(query)["searchFilter"] == [text]


def toggle_columns(driver: webdriver.Chrome, columns: list[tuple[str, str]]) -> None:
    """Show or hide runs-table columns, given as (group, name) in the Columns menu, where
    the groups are Attributes, Metrics, Parameters and Tags (a name may be in several)."""
    driver.find_element(By.CSS_SELECTOR, "[data-testid='column-selection-dropdown']").click()
    css = "[class*='tree-node-content-wrapper'][title]"
    WebDriverWait(driver, PAGE_TIMEOUT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))
    for group, name in columns:
        nodes = driver.find_elements(By.CSS_SELECTOR, css)
        titles = [node.get_attribute("title") for node in nodes]
        start = next(i for i, title in enumerate(titles) if title.startswith(group))
        nodes[titles.index(name, start + 1)].click()
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()


def fit_column(driver: webdriver.Chrome, col_id: str) -> None:
    """Widen a column to its content, as a double click on its header's edge does."""
    edge = f".ag-header-cell[col-id='{col_id}'] .ag-header-cell-resize"
    ActionChains(driver).double_click(driver.find_element(By.CSS_SELECTOR, edge)).perform()


def test_browser_filters_runs_by_noise_level(
    ui_url: str, ui_log: Path, built_repo: Repo, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    experiment, params = experiment_id(ui_url, built_repo), built_repo.params()
    level, *others = reversed(levels(built_repo))
    # The address `make ui` prints lands a fresh browser profile on the runs table, every run
    # listed (a bare experiment address opens MLflow 3's GenAI overview instead).
    (printed,) = re.findall(r"MLflow UI on .*: (http://\S+)", ui_log.read_text())
    browser.get(printed)
    every = {run["info"]["run_id"] for run in search(ui_url, experiment, "")}
    try:
        WebDriverWait(browser, PAGE_TIMEOUT_S).until(
            lambda d: (
                d.find_elements(By.CSS_SELECTOR, "input[data-testid='search-box']")
                and f"{len(every)} matching runs" in d.find_element(By.TAG_NAME, "body").text
            )
        )
    except TimeoutException:
        pytest.fail(f"{printed} did not land on the runs table: {browser.current_url}")
    assert f"#/experiments/{experiment}/runs" in browser.current_url
    for close in browser.find_elements(
        By.CSS_SELECTOR, "button[data-component-id='mlflow.assistant.chat_panel.close']"
    ):
        close.click()  # the assistant side panel only hides the table

    by_level = f"tags.noise_level = '{level}'"
    runs = search(ui_url, experiment, by_level)
    filter_runs(browser, experiment, by_level, {run["info"]["run_id"] for run in runs})
    shown = Counter(listed_runs(browser, experiment).values())
    assert shown == expected_runs(params, level)
    for other in others:
        assert not set(shown) & set(expected_runs(params, other)), other

    # The README's comparison: one method at one level, its metrics side by side.
    compare = f"{by_level} and tags.method = 'ran'"
    runs = search(ui_url, experiment, compare)
    filter_runs(browser, experiment, compare, {run["info"]["run_id"] for run in runs})
    assert Counter(listed_runs(browser, experiment).values()) == expected_runs(params, level, "ran")
    hidden = [("Attributes", name) for name in ("Dataset", "Source", "Models")]
    metrics = ("clean_accuracy", "robust_accuracy_eps8", "test.accuracy")
    tags = ("task", "method")
    toggle_columns(
        browser, [*hidden, *(("Tags", t) for t in tags), *(("Metrics", m) for m in metrics)]
    )
    for column in ("attributes.`Run Name`", *(f"metrics.`{m}`" for m in metrics)):
        fit_column(browser, column)  # fails if the column is missing
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "body")).perform()

    screenshot = tmp_path / "mlflow-compare.png"
    assert browser.save_screenshot(str(screenshot))
    if os.environ.get("MEDRAN_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, SCREENSHOT)
