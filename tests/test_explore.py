"""fastpgan explore: each control's picture is the file its printed command writes, byte
for byte; the web routes, their refusals, dropped requests; the command's own errors."""

import io
import socket
import sys
import threading

import numpy as np
import pytest
import torch
from helpers import run_printed
from PIL import Image

from fastpgan.cli.main import main
from fastpgan.explore import Explorer, Look
from fastpgan.models import ProGANGenerator, StyleGAN2Generator, StyleGANGenerator
from fastpgan.runs.checkpoint import Checkpoint

starlette = pytest.importorskip("starlette", reason="the explore extra is not installed")
from fastpgan.explore.app import LatestOnly, create_app  # noqa: E402
from fastpgan.explore.session import Superseded  # noqa: E402

LOOKS = {"plain": Look(), "truncated": Look(truncation=0.6, cutoff=2, noise_mode="none")}


def _stylegan2(folder):
    torch.manual_seed(3)
    G = StyleGAN2Generator(16, 0, 16, 8, 3, mapping_layers=1, channel_base=64, channel_max=8)
    G.mapping.w_avg.normal_()  # a centre apart from w's mean, so truncation shows
    G.save_pretrained(folder)
    return folder


def _growing_checkpoint(tmp_path, cls=ProGANGenerator):
    """A 16px generator's checkpoint 1,500 images in: fading in 8x8 at alpha 0.5."""
    torch.manual_seed(4)
    arch = "progan" if cls is ProGANGenerator else "stylegan"
    G = cls(resolution=16, latent_dim=8, fmap_base=32, fmap_max=8)
    config = dict(arch=arch, resolution=16, latent_dim=8, fmap_base=32, fmap_max=8,
                  channels=3, fade_kimg=1, stable_kimg=1, batch=4, total_kimg=None)
    return Checkpoint(config, 1500, G.state_dict()).save(tmp_path / "checkpoints")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-models")
    return {"stylegan2": _stylegan2(root / "stylegan2"),
            "progan-checkpoint": _growing_checkpoint(root / "progan"),
            "stylegan-checkpoint": _growing_checkpoint(root / "stylegan", StyleGANGenerator)}


@pytest.mark.parametrize(("model", "look"), [
    ("stylegan2", "plain"), ("stylegan2", "truncated"), ("stylegan-checkpoint", "truncated"),
    ("progan-checkpoint", "plain")])  # ProGAN refuses truncation: its own test below
def test_grid_and_enlarged_sample_are_the_files_generate_writes(models, tmp_path, model, look):
    explorer = Explorer(models[model])
    grid = explorer.grid("2-7", LOOKS[look])
    sample = explorer.sample("2-7", 4, LOOKS[look])
    assert grid.command == sample.command
    run_printed(grid.command, tmp_path / "g")
    assert (tmp_path / "g" / "grid.png").read_bytes() == grid.data
    assert (tmp_path / "g" / "seed0006.png").read_bytes() == sample.data
    if look != "plain":
        assert explorer.grid("2-7", Look()).data != grid.data, "the look changes the picture"


def test_a_growing_checkpoint_is_shown_and_rendered_at_its_stage(models):
    info = Explorer(models["progan-checkpoint"]).info()
    assert info["stage"] == "8x8 (fading in, alpha 0.50)" and info["resolution"] == 8
    assert info["full_resolution"] == 16 and not info["grown"] and info["shown_kimg"] == 1.5
    with Image.open(io.BytesIO(Explorer(models["progan-checkpoint"])
                               .sample("0-3", 0, Look()).data)) as image:
        assert image.size == (8, 8)


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize(("model", "space", "look"), [
    ("stylegan2", "w", "truncated"), ("stylegan2", "z", "truncated"),
    ("progan-checkpoint", "z", "plain"), ("stylegan-checkpoint", "w", "plain")])
def test_walk_frames_and_gif_are_what_interpolate_writes(models, tmp_path, model, space, look):
    explorer = Explorer(models[model])
    steps = 4
    gif = explorer.walk_gif(("3", "8"), steps, space, "slerp", LOOKS[look])
    run_printed(gif.command, tmp_path / "walk.gif")
    assert (tmp_path / "walk.gif").read_bytes() == gif.data
    strip = _pixels((tmp_path / "walk.png").read_bytes())  # all 2 * steps frames, upscaled
    size = explorer.stage.resolution
    scale = strip.shape[0] // size
    for frame in range(steps + 1):
        picture = explorer.walk_frame(("3", "8"), steps, space, "slerp", LOOKS[look], frame)
        assert picture.command == gif.command
        cell = strip[::scale, ::scale][:, frame * size:(frame + 1) * size]
        assert np.array_equal(_pixels(picture.data), cell), frame
    assert not np.array_equal(_pixels(explorer.walk_frame(("3", "8"), steps, space, "slerp",
                                                          LOOKS[look], 0).data),
                              _pixels(explorer.walk_frame(("3", "8"), steps, space, "slerp",
                                                          LOOKS[look], steps).data))


@pytest.mark.parametrize("layers", ["coarse", "2-3"])
def test_style_mixing_is_the_grid_style_mix_writes(models, tmp_path, layers):
    explorer = Explorer(models["stylegan2"])
    picture = explorer.style_mix(1, 4, layers, LOOKS["truncated"])
    run_printed(picture.command, tmp_path / "mix.png")
    assert (tmp_path / "mix.png").read_bytes() == picture.data
    assert picture.data != explorer.style_mix(1, 4, "middle", LOOKS["truncated"]).data


def _photo(tmp_path, size=(40, 30)) -> bytes:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    (tmp_path / "photo.png").write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _finished(explorer: Explorer, name: str):
    job = explorer.projections[name]
    job.thread.join()
    assert job.error is None, job.error
    return job


@pytest.mark.parametrize(("model", "space"), [("stylegan2", "w+"), ("stylegan2", "w"),
                                              ("progan-checkpoint", "z")])
def test_projection_is_what_project_writes_and_walks_like_a_seed(models, tmp_path, model,
                                                                  space):
    explorer = Explorer(models[model])
    look = LOOKS["truncated"] if model == "stylegan2" else Look()  # projected untruncated
    name = explorer.start_projection(_photo(tmp_path), steps=12, space=space, restarts=2,
                                     look=look)
    job = _finished(explorer, name)
    assert job.step == 12 and len(job.losses) == 12 and job.frame is not None
    projected = explorer.projection_picture(name, "projected.png")
    search = explorer.projection_picture(name, "projection.gif")
    command = projected.command.replace("photo.png", str(tmp_path / "photo.png"))
    run_printed(command, tmp_path / "projection")
    assert (tmp_path / "projection" / "projected.png").read_bytes() == projected.data
    assert (tmp_path / "projection" / "projection.gif").read_bytes() == search.data
    latent = np.load(tmp_path / "projection" / "latent.npy")
    assert np.array_equal(latent, job.result.latent.numpy())
    if space == "w+":
        assert latent.shape == (explorer.G.num_ws, explorer.G.w_dim)
    walk_space = "z" if space == "z" else "w"
    start = explorer.walk_frame((f"projection:{name}", "5"), 3, walk_space, "lerp", Look(), 0)
    assert "no command" in start.command
    with Image.open(io.BytesIO(projected.data)) as big:
        factor = big.width // explorer.stage.resolution
        assert np.array_equal(_pixels(start.data), np.asarray(big.convert("RGB"))[::factor,
                                                                                   ::factor])


def test_a_new_projection_cancels_the_running_one(models, tmp_path):
    explorer = Explorer(models["stylegan2"])
    first = explorer.start_projection(_photo(tmp_path), steps=5000)
    second = explorer.start_projection(_photo(tmp_path), steps=3)
    assert explorer.projections[first].cancelled
    explorer.projections[first].thread.join()
    assert "cancelled" in explorer.projections[first].error
    assert _finished(explorer, second).result is not None


@pytest.mark.parametrize(("call", "message"), [
    (lambda e: e.grid("0-300", Look()), "at most 256 seeds"),
    (lambda e: e.grid("5-2", Look()), "'5-2' is not N or N-M"),
    (lambda e: e.grid("0-3", Look(truncation=0.5, cutoff=99)), "--truncation-cutoff must be"),
    (lambda e: e.grid("0-3", Look(class_index=2)), "unconditional: drop --class"),
    (lambda e: e.sample("0-3", 4, Look()), "the grid has 4 images"),
    (lambda e: e.walk_frame(("0", "1"), 500, "w", "slerp", Look(), 0), "steps must be 1..240"),
    (lambda e: e.walk_frame(("0", "1"), 5, "w", "slerp", Look(), 6), "frame must be 0..5"),
    (lambda e: e.walk_frame(("projection:9", "1"), 5, "w", "slerp", Look(), 0),
     "no finished projection"),
    (lambda e: e.style_mix(1, 2, "top", Look()), "coarse, middle, fine or A-B"),
    (lambda e: e.start_projection(b"not a picture"), "not an image Pillow reads"),
    (lambda e: e.start_projection(b"x", space="z"), "ProGAN is projected in z"),
])
def test_bad_requests_are_refused_in_words(models, call, message):
    with pytest.raises(ValueError, match=message):
        call(Explorer(models["stylegan2"]))


def test_progan_refuses_truncation_and_style_mixing(models):
    explorer = Explorer(models["progan-checkpoint"])
    with pytest.raises(ValueError, match="needs a StyleGAN generator"):
        explorer.grid("0-3", Look(truncation=0.5))
    with pytest.raises(ValueError, match="ProGAN has no styles"):
        explorer.style_mix(0, 1, "coarse", Look())


def test_an_enormous_photo_is_refused_before_it_is_decoded(models, monkeypatch):
    import fastpgan.explore.session as session

    monkeypatch.setattr(session, "MAX_UPLOAD_PIXELS", 100)
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buffer, format="PNG")
    with pytest.raises(ValueError, match="20x20 pixels; the explorer projects up to"):
        Explorer(models["stylegan2"]).start_projection(buffer.getvalue())


@pytest.fixture
def client(models):
    from starlette.testclient import TestClient

    explorer = Explorer(models["stylegan2"])
    with TestClient(create_app(explorer)) as client:
        client.explorer = explorer
        yield client


def test_routes_serve_the_page_pictures_and_their_commands(client, tmp_path):
    page = client.get("/")
    assert page.status_code == 200 and "fastpgan explore" in page.text
    info = client.get("/api/info").json()
    assert info["style_based"] and info["spaces"] == ["w", "w+"]
    grid = client.get("/api/grid.png", params={"seeds": "0-3", "psi": "0.5", "cutoff": "3"})
    assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"
    assert grid.headers["x-fastpgan-command"].endswith(
        "--seeds 0-3 --truncation 0.5 --truncation-cutoff 3")
    download = client.get("/api/grid.png", params={"seeds": "0-3", "download": "1"})
    assert download.headers["content-disposition"] == 'attachment; filename="grid.png"'
    walk = client.get("/api/walk.gif", params={"a": "1", "b": "2", "steps": "3", "space": "w"})
    assert walk.status_code == 200 and walk.content[:6] == b"GIF89a"
    started = client.post("/api/project", params={"steps": "4", "space": "w+"},
                          content=_photo(tmp_path))
    name = started.json()["name"]
    client.explorer.projections[name].thread.join()
    progress = client.get(f"/api/project/{name}").json()
    assert progress["done"] and progress["error"] is None and progress["step"] == 4
    assert "--space w+" in progress["command"]
    assert client.get(f"/api/project/{name}/projected.png").status_code == 200
    assert client.get(f"/api/project/{name}/frame.png").status_code == 200


@pytest.mark.parametrize(("method", "path", "params", "body", "status", "message"), [
    ("get", "/api/grid.png", {"seeds": "x"}, None, 400, "bad seed list"),
    ("get", "/api/grid.png", {"psi": "nan"}, None, 400, "psi must be a finite number"),
    ("get", "/api/grid.png", {"noise": "loud"}, None, 400, "noise must be one of"),
    ("get", "/api/walk.png", {"steps": "two"}, None, 400, "steps must be a number"),
    ("get", "/api/grid.png", {"seeds": "4294967296"}, None, 400, "seeds go up to"),
    ("post", "/api/project", {}, b"", 400, "the upload is empty"),
    ("post", "/api/project", {}, b"GIF89a garbage", 400, "not an image Pillow reads"),
    ("get", "/api/project/7", {}, None, 404, "no projection '7'"),
])
def test_bad_requests_get_a_message_and_the_app_keeps_serving(client, method, path, params,
                                                              body, status, message):
    kwargs = {"params": params} | ({"content": body} if body is not None else {})
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status and message in response.json()["error"]
    assert client.get("/api/grid.png", params={"seeds": "0-1"}).status_code == 200


def test_an_upload_over_the_limit_is_refused_as_it_arrives(client, monkeypatch):
    import fastpgan.explore.app as app

    monkeypatch.setattr(app, "MAX_UPLOAD_BYTES", 1000)
    response = client.post("/api/project", content=b"\0" * 5000)
    assert response.status_code == 413 and "upload is over" in response.json()["error"]


def test_a_waiting_request_is_dropped_when_a_newer_one_of_its_kind_arrives():
    gate = LatestOnly(threading.Lock())
    results, rendered = {}, []

    def call(name: str) -> None:
        try:
            results[name] = gate.run("grid", lambda wanted: rendered.append(name) or name)
        except Superseded:
            results[name] = "dropped"

    gate.lock.acquire()  # a rendering in progress
    older = threading.Thread(target=call, args=("older",))
    older.start()
    while ("grid", "") not in gate._latest:  # the older request is waiting for the model
        threading.Event().wait(0.001)
    waiting = gate._latest["grid", ""]
    newer = threading.Thread(target=call, args=("newer",))
    newer.start()
    while gate._latest["grid", ""] == waiting:
        threading.Event().wait(0.001)
    gate.lock.release()
    older.join()
    newer.join()
    assert results == {"older": "dropped", "newer": "newer"} and rendered == ["newer"]
    assert gate.run("mix", lambda wanted: "alone") == "alone", "other kinds are not dropped"


def test_the_request_a_page_sent_last_is_the_one_rendered_whatever_order_they_arrive_in(
        client):
    """The page's requests travel over several connections: the one it sent second may
    arrive first. By the page's order, the late first one is dropped and the second kept;
    another page's requests are ordered apart."""
    gate = LatestOnly(threading.Lock())
    assert gate.run("grid", lambda wanted: "second", "page", 2) == "second"
    with pytest.raises(Superseded):
        gate.run("grid", lambda wanted: "first", "page", 1)
    assert gate.run("grid", lambda wanted: "other", "another page", 1) == "other"
    assert client.get("/api/grid.png", params={"seeds": "0-1", "client": "c",
                                                "order": "5"}).status_code == 200
    assert client.get("/api/grid.png", params={"seeds": "0-1", "client": "c",
                                                "order": "4"}).status_code == 204
    response = client.get("/api/grid.png", params={"seeds": "0-1", "order": "x"})
    assert response.status_code == 400 and "order must be a number" in response.json()["error"]


def test_a_grid_being_rendered_stops_between_batches_once_a_newer_one_is_asked_for(models):
    """256 seeds render in 8 batches of 32; the newer request arrives during the first."""
    explorer = Explorer(models["stylegan2"])
    asked = []

    def wanted() -> bool:
        asked.append(True)
        return len(asked) < 2  # true after the first batch, false after the second

    with pytest.raises(Superseded):
        explorer.grid("0-255", Look(), wanted)
    assert len(asked) == 2, "it stopped at the second batch, not after all 8"
    assert explorer.grid("0-255", Look()).data, "and nothing half-made was kept"


def test_explore_says_what_is_wrong_before_serving(models, tmp_path, capsys, monkeypatch):
    (tmp_path / "bad.pt").write_bytes(b"nothing a model is made of")
    assert main(["explore", str(tmp_path / "bad.pt"), "--device", "cpu"]) == 2
    assert "fastpgan explore: error:" in capsys.readouterr().err
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        assert main(["explore", str(models["stylegan2"]), "--port", str(port),
                     "--device", "cpu"]) == 2
    finally:
        taken.close()
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # the explore extra not installed
    assert main(["explore", str(models["stylegan2"]), "--device", "cpu"]) == 2
    assert 'pip install -e ".[explore]"' in capsys.readouterr().err


def test_a_published_conditional_pickle_is_explored_with_nvlabs_seeding(tmp_path,
                                                                        nvlabs_modules):
    """A renamed NVlabs snapshot (read without running it): seeds become z as NVlabs'
    scripts draw them, and the printed command, run on the same file, writes the same
    bytes."""
    from published_formats import nvlabs_snapshot

    nvlabs_snapshot(tmp_path / "renamed.bin", nvlabs_modules, tmp_path / "marker", c_dim=3)
    explorer = Explorer(tmp_path / "renamed.bin")
    assert explorer.seed_rng == "numpy" and explorer.info()["classes"] == 3
    look = Look(truncation=0.7, class_index=2)
    grid = explorer.grid("5-8", look)
    assert "--class 2" in grid.command
    run_printed(grid.command, tmp_path / "g")
    assert (tmp_path / "g" / "grid.png").read_bytes() == grid.data
    assert not (tmp_path / "marker").exists(), "nothing in the pickle ran"
    with pytest.raises(ValueError, match="conditional \\(3 classes\\): give --class"):
        explorer.grid("0-3", Look())
