"""The reader room: a file's kind comes from its content, never its name; every entry point
that reads a file refuses hostile ones, under any name, with nothing run; what a file
claims never sizes an allocation."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from published_formats import Calls, marker_source, nvlabs_record

from fastpgan.cli.main import main
from fastpgan.cli.train import main as train_main
from fastpgan.data import build_cache
from fastpgan.files import Kind, RefusedFileError, identify, read_pickle, read_tree, write_tree
from fastpgan.metrics.inception import InceptionFeatures
from fastpgan.models import Pretrained, ProGANGenerator, StyleGAN2Discriminator, load
from fastpgan.runs import Checkpoint, load_networks, load_trained

NAMES = ("ffhq.pkl", "ffhq.pkl.1", "FFHQ.PKL", "ffhq.pickle", "network-snapshot",
         "checkpoint-000000000100.pt", "checkpoint-000000000100.safetensors",
         "model.safetensors", "default_1.pt")
"""What a hostile file may be called: a second download, another case, another suffix,
a checkpoint's or a weights file's name."""


def _code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def _hostile(kind: str, marker: Path, path: Path, monkeypatch) -> None:
    """Writes a file to ``path`` that runs code leaving ``marker`` when read naively."""
    payload = Calls(exec, _code(marker))
    if kind.startswith("pickle-"):
        path.write_bytes(pickle.dumps({"G": payload}, protocol=int(kind[-1])))
    elif kind == "torch-zip":
        torch.save({"shown": 1, "config": payload}, path)
    elif kind == "torch-legacy":
        torch.save({"shown": 1, "config": payload}, path, _use_new_zipfile_serialization=False)
    elif kind == "nvlabs-nested":
        from published_formats import install_nvlabs_modules

        modules = install_nvlabs_modules(monkeypatch)
        D = StyleGAN2Discriminator(0, 8, 3, channel_base=32, channel_max=8)
        kwargs = dict(c_dim=0, img_resolution=8, img_channels=3, channel_base=32,
                      channel_max=8)
        data = {"D": nvlabs_record(D, modules[0], marker_source(marker), kwargs),
                "training_set_kwargs": {"path": [payload]}}
        path.write_bytes(pickle.dumps(data, protocol=4))
    else:
        raise AssertionError(kind)


KINDS = ("pickle-0", "pickle-2", "pickle-4", "pickle-5", "torch-zip", "torch-legacy",
         "nvlabs-nested")

API = {
    "models.load": load,
    "Pretrained.from_pretrained": Pretrained.from_pretrained,
    "StyleGAN2Discriminator.from_pretrained": StyleGAN2Discriminator.from_pretrained,
    "runs.load_trained": load_trained,
    "runs.load_networks (--init)": load_networks,
    "Checkpoint.read (--resume)": Checkpoint.read,
    "InceptionFeatures": InceptionFeatures,
}
"""Every Python entry point that reads a network, checkpoint or Inception file."""


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_files_under_every_name_are_refused_by_every_reader(tmp_path, monkeypatch,
                                                                    kind):
    marker = tmp_path / "ran.txt"
    for name in NAMES:
        path = tmp_path / name
        _hostile(kind, marker, path, monkeypatch)
        for entry, read in API.items():
            with pytest.raises(ValueError) as refused:
                read(path)
            assert not marker.exists(), f"{entry} ran code from {kind} as {name}"
            message = str(refused.value)
            assert str(path) in message and "\n" not in message.strip(), (entry, message)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = (rng.uniform(0, 255, (3, 8, 8)).astype(np.float32) for _ in range(8))
    return build_cache(images, tmp_path_factory.mktemp("data") / "blobs", 8, 3, source="t")


def _commands(path: Path, tmp: Path, blobs: Path, generator: Path) -> dict[str, tuple]:
    """Every command that reads a file given on its command line, with ``path`` there."""
    out = str(tmp / "out")
    train = ["--data", str(blobs), "--out", str(tmp / "run"), "--resolution", "8",
             "--latent-dim", "8", "--fmap-base", "32", "--fmap-max", "8", "--device", "cpu",
             "--workers", "0"]
    image = tmp / "target.png"
    if not image.exists():
        from PIL import Image

        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    device = ["--device", "cpu"]
    return {
        "generate": (main, ["generate", str(path), "--out", out, *device]),
        "interpolate": (main, ["interpolate", str(path), "--out", f"{out}.gif", *device]),
        "style-mix": (main, ["style-mix", str(path), "--out", f"{out}.png", *device]),
        "project": (main, ["project", str(path), "--target", str(image), "--out", out,
                           *device]),
        "project --inception": (main, ["project", str(generator), "--target", str(image),
                                       "--loss", "inception", "--inception", str(path),
                                       "--steps", "1", "--out", out, *device]),
        "metrics": (main, ["metrics", str(path), "--data", str(blobs), "--metrics", "swd",
                           *device]),
        "metrics --inception": (main, ["metrics", str(generator), "--data", str(blobs),
                                       "--metrics", "fid", "--num", "2", "--inception",
                                       str(path), *device]),
        "convert": (main, ["convert", str(path), out]),
        "fastpgan-train --resume": (train_main, [*train, "--resume", str(path)]),
        "fastpgan-train --init": (train_main, [*train, "--arch", "stylegan2", "--init",
                                               str(path)]),
    }


def test_every_command_refuses_hostile_files_with_one_line(tmp_path, monkeypatch, capsys,
                                                          blobs):
    marker = tmp_path / "ran.txt"
    generator = ProGANGenerator(8, 8, 32, 8).save_pretrained(tmp_path / "gen")
    for i, kind in enumerate(KINDS):
        path = tmp_path / NAMES[i % len(NAMES)]
        _hostile(kind, marker, path, monkeypatch)
        for command, (run, argv) in _commands(path, tmp_path, blobs, generator).items():
            assert run(argv) == 2, (command, kind)
            err = capsys.readouterr().err.strip()
            assert not marker.exists(), f"{command} ran code from {kind} as {path.name}"
            assert str(path) in err and len(err.splitlines()) == 1, (command, kind, err)


def test_kinds_come_from_content(tmp_path):
    def written(name: str, data: bytes) -> Path:
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    torch.save({"a": torch.ones(1)}, tmp_path / "looks.pkl")
    torch.save({"a": torch.ones(1)}, tmp_path / "old.bin", _use_new_zipfile_serialization=False)
    write_tree(tmp_path / "record.pt", {"a": torch.ones(1)}, kind="test", version=1)
    torch.jit.script(torch.nn.Flatten()).save(str(tmp_path / "net.pkl"))
    assert identify(tmp_path / "looks.pkl") is Kind.TORCH_ZIP
    assert identify(tmp_path / "old.bin") is Kind.TORCH_LEGACY
    assert identify(tmp_path / "record.pt") is Kind.SAFETENSORS
    assert identify(tmp_path / "net.pkl") is Kind.TORCHSCRIPT
    assert identify(written("weights.pt", pickle.dumps([1], protocol=0))) is Kind.PICKLE
    assert identify(tmp_path) is Kind.FOLDER
    for name, data, said in [("a.pkl", b"", "is empty"), ("b.pkl", b"\x89PNG\r\n\x1a\n....",
                                                            "a PNG image"),
                             ("c.pt", b'{"json": 1}', "JSON"),
                             ("d.pkl", b"\x1f\x8b\x08\x00", "a gzip archive"),
                             ("e.zip", _zip_of({"x.txt": b"hello"}), "not one torch.save")]:
        with pytest.raises(RefusedFileError, match=said):
            identify(written(name, data))
    with pytest.raises(RefusedFileError, match="no such file"):
        identify(tmp_path / "missing.pkl")


@pytest.mark.parametrize("header_length", [0x280, 0x380, 0x580, 40, 93, 125])
def test_a_safetensors_header_length_that_opens_like_a_pickle_is_still_safetensors(
        tmp_path, header_length):
    """A header of 0x280 bytes starts the file 80 02, pickle protocol 2's opening; one of
    40, 93 or 125 bytes starts it as protocols 0 and 1 do. The structure decides."""
    import struct

    from fastpgan.files.kinds import Kind, identify

    header = b'{"__metadata__":{}}'.ljust(header_length)
    path = tmp_path / "weights.safetensors"
    path.write_bytes(struct.pack("<Q", header_length) + header)
    assert identify(path) is Kind.SAFETENSORS


def _zip_of(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_records_round_trip_every_value_they_hold(tmp_path):
    value = {"ints": 3, "float": 0.5, "inf": float("inf"), "none": None, "text": "t",
             "tuple": (1, (2.0, "x")), "list": [1, [2]], "int keys": {0: {"step": 1}},
             "$dollar": {"$tensor": "not one"}, "tensor": torch.arange(6).view(2, 3),
             "bytes": torch.tensor([1, 2], dtype=torch.uint8), "nested": {"w": torch.ones(2)}}
    write_tree(tmp_path / "r.safetensors", value, kind="test", version=7)
    version, back = read_tree(tmp_path / "r.safetensors", "test")
    assert version == 7
    assert back.keys() == value.keys() and back["tuple"] == (1, (2.0, "x"))
    assert back["int keys"] == {0: {"step": 1}} and back["$dollar"] == {"$tensor": "not one"}
    assert torch.equal(back["tensor"], value["tensor"]) and back["inf"] == float("inf")
    with pytest.raises(RefusedFileError, match="not a other"):
        read_tree(tmp_path / "r.safetensors", "other")


# ---------------------------------------------------------------- resource attacks

def _peak_rss_of(code: str) -> tuple[int, str]:
    """(peak resident memory in MB, stderr) of ``code`` run in a fresh interpreter."""
    script = ("import resource, sys\n" + code +
              "\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1]), done.stdout


def _refused_in_bounded_memory(path: Path, match: str, reader: str = "load") -> None:
    """Reading ``path`` in a fresh process is refused with ``match`` and takes less than
    a baseline process that only imports fastpgan plus 200 MB."""
    baseline, _ = _peak_rss_of("import fastpgan.models, fastpgan.runs")
    code = (f"from fastpgan.models import Pretrained, load\nfrom fastpgan.runs import Checkpoint\n"
            f"from fastpgan.files import read_pickle\n"
            f"try:\n    {reader}({str(path)!r})\nexcept ValueError as e:\n    print('REFUSED', e)\n"
            f"else:\n    print('LOADED')")
    peak, out = _peak_rss_of(code)
    assert "REFUSED" in out and match in out, out
    assert len(out.split("REFUSED", 1)[1].strip().splitlines()) == 2  # the message, the MB
    assert peak < baseline + 200, f"{peak} MB against {baseline} MB to import"


def _shared_bomb(depth: int = 6, width: int = 100) -> list:
    """A list that refers to one list ``width`` times, ``depth`` deep: a few KB as a
    pickle, width ** depth values unfolded."""
    node: list = ["x"]
    for _ in range(depth):
        node = [node] * width
    return node


def test_a_shared_reference_bomb_in_a_record_is_refused(tmp_path, nvlabs_modules):
    reconstruct, easy = nvlabs_modules
    D = StyleGAN2Discriminator(0, 8, 3, channel_base=32, channel_max=8)
    record = nvlabs_record(D, reconstruct, "", dict(c_dim=0, img_resolution=8, img_channels=3))
    record.meta["class_name"] = _shared_bomb()
    (tmp_path / "bomb.pkl").write_bytes(pickle.dumps({"D": record}, protocol=4))
    assert (tmp_path / "bomb.pkl").stat().st_size < 20_000
    _refused_in_bounded_memory(tmp_path / "bomb.pkl", "class name")
    record.meta["class_name"] = "Discriminator"
    (tmp_path / "info.pkl").write_bytes(pickle.dumps(
        {"D": record, "training_set_kwargs": easy(path=_shared_bomb())}, protocol=4))
    _refused_in_bounded_memory(tmp_path / "info.pkl", "unfolds to more than")


def test_a_record_claiming_a_huge_network_is_refused_before_building_it(tmp_path,
                                                                        nvlabs_modules):
    from fastpgan.models import StyleGAN2Generator

    reconstruct, easy = nvlabs_modules
    G = StyleGAN2Generator(8, 0, 8, 8, 3, mapping_layers=1, channel_base=32, channel_max=8)
    claims = dict(z_dim=8, c_dim=0, w_dim=8192, img_resolution=8, img_channels=3,
                  mapping_kwargs=easy(num_layers=1),
                  synthesis_kwargs=easy(channel_base=2 ** 20, channel_max=8192))
    (tmp_path / "claims.pkl").write_bytes(pickle.dumps(
        {"G": nvlabs_record(G, reconstruct, "", claims)}, protocol=4))
    _refused_in_bounded_memory(tmp_path / "claims.pkl", "wrong shapes")
    many = dict(claims, w_dim=8, mapping_kwargs=easy(num_layers=10 ** 9),
                synthesis_kwargs=easy(channel_base=32, channel_max=8))
    (tmp_path / "deep.pkl").write_bytes(pickle.dumps(
        {"G": nvlabs_record(G, reconstruct, "", many)}, protocol=4))
    _refused_in_bounded_memory(tmp_path / "deep.pkl", "say 1000000000 mapping layers")
    folder = StyleGAN2Generator(8, 0, 8, 8, 3, mapping_layers=1, channel_base=32,
                                channel_max=8).save_pretrained(tmp_path / "saved")
    config = json.loads((folder / "config.json").read_text())
    config["config"]["mapping_layers"] = 10 ** 9
    (folder / "config.json").write_text(json.dumps(config))
    _refused_in_bounded_memory(folder, "more tensors than", "Pretrained.from_pretrained")


def _deflated_storage_pickle(path: Path, megabytes: int) -> None:
    """A tensor whose storage bytes are a torch.save zip with a deflated member that
    inflates to ``megabytes``."""
    import io

    buffer = io.BytesIO()
    torch.save(torch.zeros(megabytes << 18).untyped_storage(), buffer)
    plain = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    deflated = _zip_of({n: plain.read(n) for n in plain.namelist()}, zipfile.ZIP_DEFLATED)
    tensor = pickle.dumps(torch.zeros(4), protocol=4)
    legacy = tensor[tensor.index(b"\x80\x02\x8a"):]
    start = tensor.index(legacy) - 5
    # BINBYTES with its 4-byte length, replaced by the zip
    swapped = tensor[:start] + b"B" + struct.pack("<I", len(deflated)) + deflated + \
        tensor[start + 5 + int.from_bytes(tensor[start + 1:start + 5], "little"):]
    path.write_bytes(pickle.dumps({"x": 1}, protocol=4)[:2] + swapped[2:])


def test_compressed_storages_and_archives_are_refused_unpacked(tmp_path):
    _deflated_storage_pickle(tmp_path / "deflate.pkl", 1024)
    assert (tmp_path / "deflate.pkl").stat().st_size < 5_000_000
    _refused_in_bounded_memory(tmp_path / "deflate.pkl", "zip format", "read_pickle")
    torch.save({"shown": 1, "config": {}, "G_ema": {"w": torch.zeros(64 << 20)}},
               tmp_path / "big.pt")
    plain = zipfile.ZipFile(tmp_path / "big.pt")
    (tmp_path / "ckpt.pt").write_bytes(_zip_of({n: plain.read(n) for n in plain.namelist()},
                                               zipfile.ZIP_DEFLATED))
    (tmp_path / "big.pt").unlink()
    _refused_in_bounded_memory(tmp_path / "ckpt.pt", "compressed members", "Checkpoint.read")


def test_length_claims_beyond_the_file_are_refused(tmp_path):
    (tmp_path / "claim.pkl").write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 50) + b"x")
    with pytest.raises(RefusedFileError, match=r"longer than the file|truncated"):
        read_pickle(tmp_path / "claim.pkl")
    tensor = pickle.dumps(torch.zeros(4), protocol=4)
    at = tensor.index(b"\x04\x00\x00\x00\x00\x00\x00\x00")  # the legacy storage's count
    (tmp_path / "count.pkl").write_bytes(tensor[:at] + struct.pack("<q", 2 ** 50) +
                                         tensor[at + 8:])
    with pytest.raises(RefusedFileError, match=r"claiming 4 elements of 4 bytes with 16 "):
        read_pickle(tmp_path / "count.pkl")


class _Storage:
    """Pickles as the storage of ``tensor``, as torch writes one (once, when shared)."""

    def __init__(self, tensor):
        import warnings

        with warnings.catch_warnings():  # TypedStorage: what torch pickles a storage as
            warnings.simplefilter("ignore", UserWarning)
            self.reduced = tensor.storage().__reduce__()

    def __reduce__(self):
        return self.reduced


class _View:
    """Pickles as a tensor over ``storage`` (size, stride), as torch writes one."""

    def __init__(self, storage, size, stride):
        self.storage, self.size, self.stride = storage, size, stride

    def __reduce__(self):
        from collections import OrderedDict

        return torch._utils._rebuild_tensor_v2, (self.storage, 0, self.size, self.stride,
                                                 False, OrderedDict())


def test_views_repeating_a_storage_are_refused(tmp_path):
    storage = _Storage(torch.zeros(1 << 16))
    (tmp_path / "views.pkl").write_bytes(pickle.dumps(
        [_View(storage, (1 << 16,), (1,)) for _ in range(100)], protocol=4))
    assert (tmp_path / "views.pkl").stat().st_size < 300_000
    with pytest.raises(RefusedFileError, match="more bytes than the file holds"):
        read_pickle(tmp_path / "views.pkl")
    (tmp_path / "one.pkl").write_bytes(pickle.dumps([_View(storage, (1 << 16,), (1,))],
                                                    protocol=4))
    assert read_pickle(tmp_path / "one.pkl")[0].shape == (1 << 16,)
    small = _Storage(torch.zeros(4))
    for size, stride in [((1 << 24,), (1,)), ((1 << 24,), (0,))]:  # past it; one repeated
        (tmp_path / "expanded.pkl").write_bytes(pickle.dumps(_View(small, size, stride)))
        with pytest.raises(RefusedFileError, match="outside its storage"):
            read_pickle(tmp_path / "expanded.pkl")


def _nested_records(depth: int) -> bytes:
    """NVlabs records nested ``depth`` deep, written opcode by opcode (pickle itself would
    recurse that deep)."""
    def text(s: str) -> bytes:
        data = s.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    prefix = (b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n}(" + text("type") +
              text("class") + text("class_name") + text("Discriminator") + text("module_src") +
              text("") + text("state") + b"}(" + text("_modules") + b"}(" + text("m"))
    suffix = b"uuu\x85R"
    return b"\x80\x02" + prefix * depth + b"N" + suffix * depth + b"."


def test_records_nested_20000_deep_are_refused_in_one_line(tmp_path):
    (tmp_path / "deep.pkl").write_bytes(_nested_records(20_000))
    with pytest.raises(RefusedFileError, match="nests deeper than"):
        load(tmp_path / "deep.pkl")
    deep_list = b"\x80\x02" + b"]" * 20_000 + b"a" * 19_999 + b"."
    (tmp_path / "list.pkl").write_bytes(deep_list)
    with pytest.raises(RefusedFileError, match="nests deeper than"):
        read_pickle(tmp_path / "list.pkl")


def test_configs_and_records_from_elsewhere_are_checked(tmp_path):
    G = ProGANGenerator(8, 8, 32, 8).save_pretrained(tmp_path / "gen")
    config = json.loads((G / "config.json").read_text())
    config["config"].update(fmap_base=2 ** 40, fmap_max=2 ** 20)  # claims its weights lack
    (G / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="wrong shapes"):
        Pretrained.from_pretrained(G)
    (G / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RefusedFileError, match="nests too deeply"):
        Pretrained.from_pretrained(G)
    (G / "config.json").write_text(" " * (2 << 20))
    with pytest.raises(RefusedFileError, match="more than a model config takes"):
        Pretrained.from_pretrained(G)


def test_only_the_reader_room_deserializes():
    """torch.load, torch.jit.load, pickle and safetensors' loaders appear in fastpgan/files
    only: every other room reads networks, checkpoints and weights through it."""
    import re

    import fastpgan

    root = Path(fastpgan.__file__).parent
    readers = re.compile(r"torch\.load\(|jit\.load\(|\bimport pickle\b|pickle\.load|"
                         r"Unpickler|safe_open\(|load_file\(|np\.load\(")
    found = [f"{path.relative_to(root)}:{number}: {line.strip()}"
             for path in sorted(root.rglob("*.py")) if path.parent.name != "files"
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if readers.search(line)]
    assert not found, found
