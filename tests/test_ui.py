"""The tour's ExperimentPanel works in a real browser: JupyterLab + headless chromium, driven by playwright.

Executing a notebook (``test_notebooks.py``) never renders a widget or clicks a button. This test
opens a temporary copy of ``notebooks/00_tour.ipynb`` in JupyterLab, runs every cell, moves the
panel's ``n_betas`` slider, presses **Run** and waits until the live plotly figure, updated from the
panel's worker thread, shows the run's points in the page; the stored run must carry the slider's value.
It then starts a long run, sees its first points arrive while it runs, presses **Stop**, and checks
the run ends ``stopped`` part-way, which shows the kernel's main thread stayed free for the click.

Teaching mode (``make demo``): a second test serves a temporary copy of ``03_sgn_certificates.ipynb`` with
Voila as ``make demo`` does (127.0.0.1, a token), moves the ``MarginExplorer``'s coupling slider and checks
that the FigureWidget (plotly's anywidget) redraws to the closed-form margins at the new coupling; the
page, the page's kernel and its websocket must refuse requests without the token.

Needs Debian's ``chromium`` (``apt-get install chromium``; never ``playwright install``). Without
it the test skips, unless ``LAB_REQUIRE_UI=1`` (as in CI), where it fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.ui

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00_tour.ipynb"
SERVER_START_TIMEOUT_S = 120
KERNEL_IDLE_TIMEOUT_MS = 120_000
RUN_ALL_TIMEOUT_MS = 300_000
WIDGET_TIMEOUT_MS = 60_000
LONG_RUN_MC_SAMPLES = 5_000_000  # about 0.1 s per point on 2 cores: the run lasts long enough to be stopped
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# True once the notebook's kernel is idle and every code cell has run (or one raised: then "error" is set).
JS_RUN_ALL_DONE = """() => {
    const nb = window.jupyterapp.shell.currentWidget;
    const cells = (nb?.content?.widgets ?? []).filter(cell => cell.model.type === 'code');
    for (const cell of cells) {
        const error = cell.model.outputs.toJSON().find(output => output.output_type === 'error');
        if (error) return {error: `${error.ename}: ${error.evalue}`};
    }
    const idle = nb?.sessionContext?.session?.kernel?.status === 'idle';
    return idle && cells.length > 0 && cells.every(cell => cell.model.executionCount !== null) && {error: null};
}"""

# The number of points of each trace of a plotly graph div, and whether all its x values are finite. ``_fullData``
# holds the decoded arrays (``data`` may hold the typed-array specs, {dtype, bdata}, that FigureWidget sends).
JS_TRACE_POINTS = """el => (el._fullData ?? []).map(trace => {
    const xs = Array.from(trace.x ?? []);
    return {points: xs.length, finite: xs.every(Number.isFinite)};
})"""


@dataclass(frozen=True)
class LabServer:
    base_url: str
    token: str
    root: Path
    store_path: Path
    log_path: Path

    def log_tail(self, n_chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n_chars:] if self.log_path.exists() else ""


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("LAB_REQUIRE_UI") == "1":
        pytest.fail(f"{reason} (LAB_REQUIRE_UI=1 forbids skipping the browser test)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        _skip_or_fail("chromium not found: install it with 'apt-get install chromium' to run the real-browser test")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _skip_or_fail("python playwright not installed: pip install -e '.[dev]'")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _isolated_env(tmp: Path) -> dict[str, str]:
    """The environment of a server under test: its own Jupyter dirs and run store, notebooks in quick mode."""
    return dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_DATA_DIR=str(tmp / "data"),  # the notebook-signing key would otherwise go to ~/.local/share/jupyter
        LAB_QUICK="1",
        LAB_STORE=str(tmp / "lab.sqlite"),
    )


@contextlib.contextmanager
def _serving(name: str, command: list[str], server: LabServer, env: dict[str, str], ready_path: str) -> Iterator[None]:
    """Run ``command`` in ``server.root`` (output to ``server.log_path``) until ``ready_path`` answers 200.

    Stops it on exit: jupyter_server and Voila shut their kernels down on SIGTERM.
    """
    with open(server.log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=server.root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with code {process.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.base_url}{ready_path}", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not answer within {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def jupyter_lab(chromium_path, tmp_path_factory) -> Iterator[LabServer]:
    """JupyterLab on a free port, serving a temporary copy of the tour; stopped at the end of the session."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    env = _isolated_env(tmp)
    (tmp / "config" / "labconfig").mkdir(parents=True)
    # JupyterLab 4's "get notified about official Jupyter news?" toast would cover the widgets.
    disabled = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
    (tmp / "config" / "labconfig" / "page_config.json").write_text(json.dumps(disabled))
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
        f"--LabServerApp.workspaces_dir={tmp / 'ws'}",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # jupyter refuses to start as root otherwise (CI containers run as root)
    server = LabServer(f"http://127.0.0.1:{port}", token, root, tmp / "lab.sqlite", tmp / "jupyterlab.log")
    with _serving("jupyter lab", command, server, env, ready_path=f"/api/status?token={token}"):
        yield server


def test_panel_run_draws_the_runs_points_in_the_browser(jupyter_lab, chromium_path, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from lab.runs import RunStore

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{jupyter_lab.base_url}/lab/tree/{NOTEBOOK.name}?reset&token={jupyter_lab.token}")
            page.wait_for_function(
                "window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
                timeout=KERNEL_IDLE_TIMEOUT_MS,
            )
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            outcome = page.wait_for_function(JS_RUN_ALL_DONE, timeout=RUN_ALL_TIMEOUT_MS, polling=250).json_value()
            assert outcome["error"] is None, f"a cell raised {outcome['error']}"

            # The panel: the output holding a widget button and a plotly graph (the tour's later figure has no button).
            panel = page.locator(".jp-OutputArea-output:has(.js-plotly-plot):has(.widget-button)")
            expect(panel).to_have_count(1, timeout=WIDGET_TIMEOUT_MS)
            panel.scroll_into_view_if_needed()  # for the screenshot; the notebook renders off-screen cells lazily
            plot = panel.locator(".js-plotly-plot")
            expect(plot.locator(".gtitle")).to_have_text("alignment-tradeoff", timeout=WIDGET_TIMEOUT_MS)
            expect(panel).to_contain_text("ready")
            before = plot.evaluate(JS_TRACE_POINTS)
            assert before and all(trace["points"] == 0 for trace in before), f"traces not empty before Run: {before}"

            # Move the n_betas slider one step (ipywidgets 8 noUiSlider); the run must use the new value.
            slider = panel.locator(".widget-slider").filter(has_text="n_betas")
            readout = slider.locator(".widget-readout")
            n_betas = int(readout.inner_text())
            slider.locator(".noUi-handle").focus()
            page.keyboard.press("ArrowRight")
            expect(readout).to_have_text(str(n_betas + 1))

            # Not get_by_role(name="Run", exact=True): the font-awesome icon's glyph is part of the accessible name.
            panel.locator("button.widget-button", has_text=re.compile(r"^Run$")).click()
            page.wait_for_function(
                f"el => ({JS_TRACE_POINTS})(el)[0]?.points > 5", arg=plot.element_handle(), timeout=WIDGET_TIMEOUT_MS
            )
            expect(panel).to_contain_text(re.compile(r"run \d+ finished"), timeout=WIDGET_TIMEOUT_MS)
            after = plot.evaluate(JS_TRACE_POINTS)
            assert len(after) == len(before)
            assert after[0]["points"] == n_betas + 1 and all(trace["finite"] for trace in after), after

            run_id = int(re.search(r"run (\d+) finished", panel.inner_text()).group(1))
            store = RunStore(jupyter_lab.store_path)
            info = store.run_info(run_id)
            assert (info["status"], info["config"]["n_betas"]) == ("finished", n_betas + 1)

            # A long run: points appear while it runs, and Stop reaches the kernel (the run is on a worker thread).
            samples = panel.locator(".widget-text").filter(has_text="mc_samples").locator("input")
            samples.fill(str(LONG_RUN_MC_SAMPLES))
            samples.press("Enter")
            panel.locator("button.widget-button", has_text=re.compile(r"^Run$")).click()
            expect(panel).to_contain_text(re.compile(rf"run {run_id + 1} running"), timeout=WIDGET_TIMEOUT_MS)
            page.wait_for_function(
                f"el => ({JS_TRACE_POINTS})(el)[0]?.points > 0", arg=plot.element_handle(), timeout=WIDGET_TIMEOUT_MS
            )
            panel.locator("button.widget-button", has_text=re.compile(r"^Stop$")).click()
            expect(panel).to_contain_text(f"run {run_id + 1} stopped", timeout=WIDGET_TIMEOUT_MS)
            stopped = store.run_info(run_id + 1)
            assert stopped["status"] == "stopped" and stopped["config"]["mc_samples"] == LONG_RUN_MC_SAMPLES
            logged = store.metrics(run_id + 1, names=["tilted.reward", "best_of_n.reward"])
            assert 0 < len(logged) < (n_betas + 1) + 64  # stopped part-way: some points, not all of them
        except BaseException:
            print(f"--- jupyter lab log (tail) ---\n{jupyter_lab.log_tail()}")
            raise
        finally:
            try:  # an artifact for humans, on success and failure alike; never the reason the test fails
                page.screenshot(path=tmp_path / "tour.png")
                print(f"screenshot: {tmp_path / 'tour.png'}")
            except Exception as error:
                print(f"no screenshot: {error}")
            browser.close()


# --- Teaching mode: a notebook rendered as an app by Voila (``make demo``) ------------------------------------------

VOILA_NOTEBOOK = NOTEBOOK.parent / "03_sgn_certificates.ipynb"
VOILA_RENDER_TIMEOUT_MS = 600_000  # Voila runs the whole notebook (quick mode) before its widgets go live
TOY_A, TOY_B = 10.0, 0.05  # MarginExplorer's toy: mu = (1, 1), L12 = lambda a, L21 = lambda b

# Each trace of a plotly graph div by name: its y values, decoded (``_fullData``, as in JS_TRACE_POINTS).
JS_TRACES_Y = """el => Object.fromEntries((el._fullData ?? []).map(trace => [trace.name, Array.from(trace.y ?? [])]))"""


@pytest.fixture
def voila_app(chromium_path, tmp_path_factory) -> Iterator[LabServer]:
    """Voila, as ``make demo`` starts it (127.0.0.1, a token), on a temporary copy of notebook 03 in quick mode."""
    tmp = tmp_path_factory.mktemp("voila")
    root = tmp / "root"
    root.mkdir()
    shutil.copy(VOILA_NOTEBOOK, root / VOILA_NOTEBOOK.name)
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "voila", VOILA_NOTEBOOK.name, "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
        "--Voila.port_retries=0", f"--Voila.token={token}",
    ]  # fmt: skip
    server = LabServer(f"http://127.0.0.1:{port}", token, root, tmp / "lab.sqlite", tmp / "voila.log")
    # Ready once it serves anywidget's front end (FigureWidget needs it): public, so no token, and runs no notebook.
    ready = "/voila/labextensions/anywidget/package.json"
    with _serving("voila", command, server, _isolated_env(tmp), ready_path=ready):
        yield server


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect becomes an HTTPError carrying its status and Location


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """(status, Location header, body) of a GET, redirects not followed."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=60) as response:
            return response.status, response.headers.get("Location", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", ""), b""


def _assert_refused(url: str, headers: dict[str, str] | None = None) -> None:
    status, location, _ = _get(url, headers)
    refused = status == 403 or (status in (301, 302, 303, 307) and "/login" in location)
    assert refused, f"GET {url} without a valid token answered {status} {location!r}"


def test_voila_app_slider_redraws_the_plot_and_the_server_wants_its_token(voila_app, chromium_path, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, token = voila_app.base_url, voila_app.token
    _assert_refused(f"{base}/")  # no token: to the login page, and no kernel started
    _assert_refused(f"{base}/?token={secrets.token_hex(16)}")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # Offline by construction: Voila's template asks a CDN for font-awesome; the app must not need it.
        page.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), lambda route: route.abort())
        try:
            page.goto(f"{base}/?token={token}", wait_until="commit", timeout=VOILA_RENDER_TIMEOUT_MS)
            # MarginExplorer: a VBox with the "coupling λ" slider and a FigureWidget (plotly's anywidget).
            coupling = page.locator(".widget-slider").filter(has=page.get_by_text("coupling λ", exact=True))
            explorer = page.locator(".widget-vbox").filter(has=coupling).filter(has=page.locator(".js-plotly-plot"))
            expect(explorer).to_have_count(1, timeout=VOILA_RENDER_TIMEOUT_MS)
            explorer.scroll_into_view_if_needed()
            plot = explorer.locator(".js-plotly-plot")
            page.wait_for_function(
                f"el => ({JS_TRACES_Y})(el)['margin α(w)']?.length > 0",
                arg=plot.element_handle(timeout=VOILA_RENDER_TIMEOUT_MS),
                timeout=VOILA_RENDER_TIMEOUT_MS,
            )
            optimum, euclidean = "optimum r* = 200", "Euclidean weights (1, 1)"

            def assert_drawn_at(lam: float) -> dict[str, list[float]]:
                # Closed forms: r* = a/b at every lambda, alpha* = 1 - lambda sqrt(ab), alpha(1, 1) = 1 - lambda (a+b)/2
                traces = plot.evaluate(JS_TRACES_Y)
                assert traces[optimum] == pytest.approx([1 - lam * (TOY_A * TOY_B) ** 0.5], abs=1e-9), traces[optimum]
                assert traces[euclidean] == pytest.approx([1 - lam * (TOY_A + TOY_B) / 2], abs=1e-9), traces[euclidean]
                assert len(traces["margin α(w)"]) == 400 and max(traces["margin α(w)"]) <= traces[optimum][0] + 1e-9
                expect(explorer).to_contain_text(f"Euclidean monotonicity margin {1 - lam * (TOY_A + TOY_B) / 2:.3f}")
                title = plot.locator(".gtitle").text_content()
                assert title.startswith(f"α(w) at w2/w1 = 200: {1 - lam * (TOY_A * TOY_B) ** 0.5:.4f}"), title
                return traces

            readout = coupling.locator(".widget-readout")
            lam = float(readout.inner_text())
            before = assert_drawn_at(lam)

            # One step of the slider (ipywidgets 8 noUiSlider, step 0.05): the kernel redraws the FigureWidget.
            coupling.locator(".noUi-handle").focus()
            page.keyboard.press("ArrowRight")
            expect(readout).not_to_have_text(f"{lam:.2f}")
            moved = float(readout.inner_text())
            assert moved == pytest.approx(lam + 0.05)
            page.wait_for_function(
                f"([el, old]) => ({JS_TRACES_Y})(el)[{json.dumps(euclidean)}]?.[0] !== old",
                arg=[plot.element_handle(), before[euclidean][0]],
                timeout=WIDGET_TIMEOUT_MS,
            )
            after = assert_drawn_at(moved)
            assert after["margin α(w)"] != before["margin α(w)"]

            # The page's kernel answers with the token and refuses without it (REST and its websocket).
            kernel_id = page.evaluate("JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
            status, _, body = _get(f"{base}/api/kernels/{kernel_id}?token={token}")
            assert status == 200 and json.loads(body)["id"] == kernel_id
            _assert_refused(f"{base}/api/kernels/{kernel_id}")
            upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
            _assert_refused(f"{base}/api/kernels/{kernel_id}/channels", upgrade)
        except BaseException:
            print(f"--- voila log (tail) ---\n{voila_app.log_tail()}")
            raise
        finally:
            try:
                page.screenshot(path=tmp_path / "voila.png")
                print(f"screenshot: {tmp_path / 'voila.png'}")
            except Exception as error:
                print(f"no screenshot: {error}")
            browser.close()
