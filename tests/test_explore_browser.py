"""fastpgan explore in a real browser: headless Chromium (Debian's package) drives the page
of a running ``fastpgan explore`` and checks that what it shows is what the printed CLI
commands write. Skipped, saying so, where Chromium or Playwright is missing (.ci/run
installs both).

FASTPGAN_SCREENSHOTS=FOLDER keeps the screenshots there (README's come from here, with
FASTPGAN_EXPLORE_MODEL naming the model to show instead of the test's tiny one).
"""

import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_printed
from PIL import Image

from fastpgan.models import StyleGAN2Generator

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get "
                                "install chromium; .ci/run installs it)")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                 "(pip install -e \".[test]\")")
pytest.importorskip("starlette", reason="the explore extra is not installed")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    if os.environ.get("FASTPGAN_EXPLORE_MODEL"):
        return os.environ["FASTPGAN_EXPLORE_MODEL"]
    torch.manual_seed(5)
    G = StyleGAN2Generator(16, 0, 16, 16, 3, mapping_layers=1, channel_base=64, channel_max=8)
    G.mapping.w_avg.normal_()
    folder = tmp_path_factory.mktemp("browser") / "generator"
    G.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def address(model):
    """A running ``fastpgan explore`` on a free port; Ctrl-C ends it at the end."""
    app = subprocess.Popen([sys.executable, "-m", "fastpgan.cli.main", "explore", model,
                            "--port", "0", "--device", "cpu"], stdout=subprocess.PIPE,
                           text=True)
    line = app.stdout.readline()  # the app prints its address once it listens
    assert line.startswith("fastpgan explore: http://127.0.0.1:"), line
    yield line.split()[2]
    app.send_signal(signal.SIGINT)
    assert app.wait() == 0, "Ctrl-C stops it cleanly"


@pytest.fixture(scope="module")
def page(address):
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        # every wait is for a state of the page; the limit only ends a hung test on a
        # loaded machine, where Playwright's 30 s can pass before a grid renders
        page.set_default_timeout(600_000)
        page.goto(address)
        yield page
        browser.close()


def _shown(page, selector: str) -> bytes:
    """The bytes of the picture an <img> shows (its blob URL, fetched in the page)."""
    data = page.evaluate("""async selector => {
        const source = document.querySelector(selector).src;
        const buffer = await (await fetch(source)).arrayBuffer();
        return Array.from(new Uint8Array(buffer)); }""", selector)
    return bytes(data)


def _wait_for(page, image: str, parameter: str, value: str) -> None:
    """Waits until the <img> ``image`` shows the picture asked for with parameter=value."""
    page.wait_for_function("""([image, parameter, value]) => {
        const url = document.getElementById(image).dataset.url || "?";
        return new URLSearchParams(url.split("?")[1]).get(parameter) === value; }""",
                           arg=[image, parameter, value])


def _screenshot(page, name: str, tmp_path: Path) -> None:
    page.screenshot(path=tmp_path / name, full_page=True)
    if os.environ.get("FASTPGAN_SCREENSHOTS"):
        folder = Path(os.environ["FASTPGAN_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, folder / name)


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_truncation_control_renders_what_generate_writes(page, tmp_path):
    page.wait_for_selector("#grid[data-seeds]")
    untruncated = _shown(page, "#grid")
    page.focus("#psi")
    for _ in range(10):  # 1 -> 0.5 a step at a time: each one asks for a grid
        page.keyboard.press("ArrowLeft")
    _wait_for(page, "grid", "psi", "0.5")
    assert "--truncation 0.5" in page.inner_text("#grid-command")
    truncated = _shown(page, "#grid")
    assert truncated != untruncated
    run_printed(page.inner_text("#grid-command"), tmp_path / "g")
    assert (tmp_path / "g" / "grid.png").read_bytes() == truncated
    box = page.locator("#grid").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.1)  # seed 2
    page.wait_for_selector("#enlarged[data-url]")
    assert (tmp_path / "g" / "seed0002.png").read_bytes() == _shown(page, "#enlarged")
    page.click("#use-to")  # the chosen sample ends the interpolation
    assert page.input_value("#walk-b") == "2"
    _screenshot(page, "explore-samples.png", tmp_path)


def test_interpolation_slider_shows_the_walk_interpolate_writes(page, tmp_path):
    page.fill("#walk-a", "3")
    assert page.input_value("#walk-b") == "2"
    page.fill("#walk-steps", "6")
    page.select_option("#walk-space", "w")
    page.click("#walk-run")
    page.wait_for_selector('#walk[data-url*="frame=0"]')
    first = _shown(page, "#walk")
    page.focus("#walk-t")
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    _wait_for(page, "walk", "frame", "4")
    shown = _shown(page, "#walk")
    assert shown != first
    assert "--seeds 3,2" in page.inner_text("#walk-command")
    run_printed(page.inner_text("#walk-command"), tmp_path / "walk.gif")
    strip = _pixels((tmp_path / "walk.png").read_bytes())  # all 12 frames, upscaled
    size = _pixels(shown).shape[0]
    scale = strip.shape[0] // size
    assert np.array_equal(_pixels(shown), strip[::scale, ::scale][:, 4 * size:5 * size])
    gif = page.evaluate("""async () => {
        const buffer = await (await fetch(document.getElementById("walk-gif").href)).arrayBuffer();
        return Array.from(new Uint8Array(buffer)); }""")
    assert bytes(gif) == (tmp_path / "walk.gif").read_bytes()
    _screenshot(page, "explore-interpolation.png", tmp_path)


def test_style_mixing_shows_the_grid_style_mix_writes(page, tmp_path):
    page.fill("#mix-row", "2")
    page.fill("#mix-col", "9")
    page.select_option("#mix-layers", "coarse")
    page.click("#mix-run")
    page.wait_for_selector("#mix[data-url]")
    assert "--layers coarse" in page.inner_text("#mix-command")
    run_printed(page.inner_text("#mix-command"), tmp_path / "mix.png")
    assert (tmp_path / "mix.png").read_bytes() == _shown(page, "#mix")


def test_a_photo_uploaded_for_projection_converges_to_what_project_writes(page, tmp_path):
    from skimage.data import astronaut  # a photo scikit-image ships: Eileen Collins

    photo = tmp_path / "photo.png"
    Image.fromarray(astronaut()[20:240, 150:370]).save(photo)  # her face
    page.set_input_files("#photo", str(photo))
    page.fill("#project-steps", "40")
    page.select_option("#project-space", "w+")
    page.click("#project-run")
    page.wait_for_selector('#project-status[data-done="true"]')
    page.wait_for_selector("#projected[data-url]")
    assert "step 40 of 40" in page.inner_text("#project-status")
    command = page.inner_text("#project-command")
    assert "--space w+" in command and "--steps 40" in command
    run_printed(page.inner_text("#project-command").replace("photo.png", str(photo)),
                tmp_path / "projection")
    for name, image in (("projected.png", "#projected"), ("target.png", "#target")):
        assert (tmp_path / "projection" / name).read_bytes() == _shown(page, image), name
    page.click("#project-use")  # the found latent starts the interpolation
    page.wait_for_selector('#walk[data-url*="a=projection"]')
    _screenshot(page, "explore-projection.png", tmp_path)


def test_a_bad_request_shows_its_message_and_the_page_goes_on(page):
    page.fill("#seeds", "9-3")
    page.wait_for_selector("#error:visible")
    assert "'9-3' is not N or N-M" in page.inner_text("#error")
    page.fill("#seeds", "0-3")
    page.wait_for_selector('#grid[data-seeds="0-3"]')
    assert not page.is_visible("#error")
