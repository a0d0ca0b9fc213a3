"""ONNX Runtime gives the same answers as PyTorch: each exported network's outputs within 1e-4 of
the module's on real inputs, and the whole pipeline the same faces and vectors (models.runtime)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models import runtime
from models.embedder import Embedder
from models.pipeline import PipelineConfig, build_pipeline, onnx_exports
from models.runtime import OrtNet

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def group_photo(known: Path) -> np.ndarray:
    return np.array(Image.open(known / "test" / "obama_and_biden.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    cache = tmp_path_factory.mktemp("onnx")
    return (
        build_pipeline(PipelineConfig(runtime="torch")),
        build_pipeline(PipelineConfig(runtime="onnxruntime"), cache_dir=cache),
        cache,
    )


def test_auto_is_onnxruntime_on_a_cpu_and_torch_on_a_gpu():
    assert runtime.resolve("auto", "cpu") == runtime.resolve("auto", torch.device("cpu")) == "onnxruntime"
    assert runtime.resolve("auto", "cuda:0") == runtime.resolve("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="runs on the CPU"):
        runtime.resolve("onnxruntime", "cuda")


@pytest.mark.parametrize("aligner", ["mtcnn5", "landmarks68"])
def test_every_exported_network_gives_the_modules_outputs(aligner: str):
    rng = np.random.default_rng(0)
    for export in onnx_exports(PipelineConfig(aligner=aligner)):
        net, session = export.build(), OrtNet(export.onnx())
        shapes = [export.shape]
        if 2 in export.dynamic:  # P-Net: other image sizes than the example's
            shapes += [(1, 3, 37, 49), (1, 3, 144, 192)]
        if 0 in export.dynamic:
            shapes.append((5, *export.shape[1:]))
        for shape in shapes:
            x = rng.uniform(-1, 1, shape).astype(np.float32)
            with torch.inference_mode():
                expected = net(torch.from_numpy(x))
            got = session(x)
            expected = expected if isinstance(expected, tuple) else (expected,)
            got = got if isinstance(got, tuple) else (got,)
            for e, g in zip(expected, got):
                assert isinstance(g, np.ndarray) and g.dtype == np.float32 and g.shape == tuple(e.shape)
                assert np.abs(g - e.float().numpy()).max() <= TOLERANCE, (export.name, shape)


def test_the_cache_key_follows_the_weights_and_the_settings_of_a_network(tmp_path: Path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"\0" * 1000)
    key = runtime.cache_key((1, 3, 8, 8), {0: "n"}, [weights, b"arch"])
    assert runtime.cache_key((1, 3, 8, 8), {0: "n"}, [weights, b"arch"]) == key
    assert runtime.cache_key((1, 3, 8, 8), {0: "n"}, [weights, b"arch2"]) != key
    assert runtime.cache_key((2, 3, 8, 8), {0: "n"}, [weights, b"arch"]) != key
    weights.write_bytes(b"\0" * 999 + b"\1")
    assert runtime.cache_key((1, 3, 8, 8), {0: "n"}, [weights, b"arch"]) != key


def test_the_pipeline_finds_the_same_faces_and_vectors_on_either_runtime(pipelines, group_photo):
    eager, ort_pipeline, _ = pipelines
    a, b = eager.faces(group_photo), ort_pipeline.faces(group_photo)
    assert len(a) == len(b) >= 2
    for x, y in zip(a, b):
        assert np.abs(x.box - y.box).max() < 1e-2
        assert float(np.dot(x.embedding, y.embedding)) > 0.99999


def test_exported_networks_are_cached_and_reused(pipelines):
    _, _, cache = pipelines
    files = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert sorted(n.split("-")[0] for n in files) == ["embedder", "onet", "pnet", "rnet"]
    build_pipeline(PipelineConfig(runtime="onnxruntime"), cache_dir=cache)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == files  # read, not exported again


def test_the_export_command_writes_loadable_models(tmp_path: Path):
    runtime.main(["--out", str(tmp_path)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["embedder.onnx", "onet.onnx", "pnet.onnx", "rnet.onnx"]
    session = OrtNet((tmp_path / "embedder.onnx").read_bytes())
    assert session(np.zeros((1, 3, 80, 80), np.float32)).shape == (1, 512)


def test_the_int8_embedder_gives_nearly_the_fp32_vectors_under_a_version_of_its_own(pipelines, group_photo):
    _, fp32, cache = pipelines
    int8 = build_pipeline(PipelineConfig(runtime="onnxruntime", embedder_int8=True), cache_dir=cache)
    a, b = fp32.faces(group_photo), int8.faces(group_photo)
    assert len(a) == len(b) >= 2
    for x, y in zip(a, b):
        assert np.abs(x.box - y.box).max() < 1e-2  # detection is untouched
        assert 0.99 < float(np.dot(x.embedding, y.embedding)) < 0.99999  # close, and really another network
    assert int8.embedder.version == f"{fp32.embedder.version}-int8"  # never compared with fp32 vectors


def test_the_int8_embedder_is_refused_where_it_would_be_ignored():
    with pytest.raises(ValueError, match="int8 embedder runs on ONNX Runtime"):
        build_pipeline(PipelineConfig(runtime="torch", embedder_int8=True))


def test_an_int8_network_its_card_does_not_vouch_for_is_refused(tmp_path: Path):
    weights = PipelineConfig().weights
    for f in weights.parent.glob(f"{weights.stem}.*"):
        shutil.copy(f, tmp_path / f.name)
    copy = tmp_path / weights.name
    onnx_file = copy.with_suffix(".int8.onnx")
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        Embedder(copy).use_onnxruntime(int8=True)
    card = json.loads(copy.with_suffix(".json").read_text())
    del card["int8"]
    copy.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="names no int8 network"):
        Embedder(copy).use_onnxruntime(int8=True)


def test_the_quantize_command_writes_an_int8_network_its_card_vouches_for(tmp_path: Path, data: Path):
    from training import quantize

    weights = PipelineConfig().weights
    for f in weights.parent.glob(f"{weights.stem}.*"):
        if not f.name.endswith(".int8.onnx"):
            shutil.copy(f, tmp_path / f.name)
    copy = tmp_path / weights.name
    card = json.loads(copy.with_suffix(".json").read_text())
    del card["int8"]
    copy.with_suffix(".json").write_text(json.dumps(card))
    train = data / "recognition" / "train"
    tree = tmp_path / "train"
    for person in sorted(train.iterdir())[:4]:
        shutil.copytree(person, tree / person.name)
    crops = sorted(tree.glob("*/*"))
    with pytest.raises(ValueError, match="asks for more"):
        quantize.main(["--weights", str(copy), "--data", str(tree), "--crops", str(len(crops) + 1)])

    quantize.main(["--weights", str(copy), "--data", str(tree), "--crops", "16"])
    entry = json.loads(copy.with_suffix(".json").read_text())["int8"]
    assert entry["file"] == copy.with_suffix(".int8.onnx").name and "--crops 16" in entry["reproduce"]
    fp32, int8 = Embedder(copy), Embedder(copy)
    int8.use_onnxruntime(int8=True)  # the SHA-256 the card records matches the file written
    faces = [np.array(Image.open(f).convert("RGB").resize((112, 112))) for f in crops[:6]]
    cosines = np.sum(fp32.embed(faces) * int8.embed(faces), axis=1)
    assert 0.99 < cosines.min() and cosines.max() < 0.99999, cosines  # close, and really int8 (measured 0.999)


def test_a_photo_sharing_the_cores_runs_one_thread_sessions_with_the_same_answers(pipelines, group_photo):
    """models.runtime.single_threaded (the inference gate's choice for a photo that enters while another
    is inside): each network then runs its one-thread session, and the faces and vectors stay the same."""
    _, ort_pipeline, _ = pipelines
    embedder = ort_pipeline.embedder.runner
    assert embedder.session.get_session_options().intra_op_num_threads == runtime.default_threads()
    assert embedder.single.get_session_options().intra_op_num_threads == 1
    wide = ort_pipeline.faces(group_photo)
    with runtime.single_threaded():
        assert runtime.running_single_threaded()
        with runtime.single_threaded():  # nests
            pass
        assert runtime.running_single_threaded()
        narrow = ort_pipeline.faces(group_photo)
    assert not runtime.running_single_threaded()
    assert len(wide) == len(narrow) >= 2
    for x, y in zip(wide, narrow):
        assert np.abs(x.box - y.box).max() < 1e-3
        assert float(np.dot(x.embedding, y.embedding)) > 0.99999


def test_a_two_thread_network_holds_a_one_thread_session_that_answers_the_same():
    (export,) = [e for e in onnx_exports(PipelineConfig()) if e.name == "embedder"]
    model = export.onnx()
    session = OrtNet(model, threads=2)
    assert session.single is not session.session
    assert session.session.get_session_options().intra_op_num_threads == 2
    x = np.random.default_rng(1).uniform(-1, 1, (2, *export.shape[1:])).astype(np.float32)
    wide = session(x)
    with runtime.single_threaded():
        narrow = session(x)
    assert np.abs(wide - narrow).max() <= TOLERANCE
    alone = OrtNet(model, threads=1)
    assert alone.single is alone.session  # a one-thread network needs no second session
