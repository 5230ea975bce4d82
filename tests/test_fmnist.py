"""FMNIST/run.py end to end on real Fashion-MNIST (Debian's dataset-fashion-mnist), on small subsets."""

import gzip
import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from run_outputs import FLAGS, check_outputs
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pfa.attention.registry import attention_kinds
from pfa.data.fashion_mnist import DEBIAN_DIR, load_fashion_mnist
from pfa.engine.config import parse_config
from pfa.errors import UserError
from pfa.tasks import recipe_folder
from pfa.tasks.fmnist import FMNISTConfig

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist package")
SMALL = ["--device", "cpu", "--width", "16", "--dropout", "0", "--train-samples", "600", "--test-samples", "500",
         "--batch-size", "32", "--lr", "3e-3", "--scheduler", "none"]


def load_entry_point():
    spec = importlib.util.spec_from_file_location("fmnist_run", ROOT / "FMNIST/run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_py = load_entry_point()


def read(path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short real run shared by the tests below: 600 training images, 2 epochs, a report, 2 attention pictures."""
    out = tmp_path_factory.mktemp("fmnist") / "run"
    record = run_py.main([*SMALL, "--epochs", "2", "--out-dir", str(out), *FLAGS])
    return out, record


def test_short_real_run_lowers_the_loss_and_beats_chance(trained):
    out, record = trained
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    train_loss = [e.value for e in events.Scalars("train/loss")]
    assert len(train_loss) == 2 and train_loss[1] < 0.8 * train_loss[0]
    assert record["test_acc"] > 0.4  # chance is 0.1
    assert read(out / "metrics.json") == record
    config = (out / "config.yaml").read_text()
    assert "width: 16" in config and "train_samples: 600" in config


def test_attention_pictures_report_and_curves(trained):
    out, _ = trained
    report = check_outputs(out)
    assert len(report["spike_rates"]) == 4 and sum(r["rate"] for r in report["spike_rates"]) > 0  # the 4 LIF layers
    pictures = sorted((out / "attention").iterdir())
    assert [p.name for p in pictures] == ["test00000.png", "test00001.png"]
    # pfa.attention.pictures's figure: 2.1 in per column, 2 + max(T, R) = 6 columns, 4.8 in high, at 100 dpi.
    for picture in pictures:
        with Image.open(picture) as image:
            assert image.size == (1260, 480) and image.format == "PNG"
            assert len(image.getcolors(maxcolors=10_000)) > 20  # real content, not a blank canvas


def test_eval_only_on_the_full_pipeline(trained, tmp_path):
    out, record = trained
    evaluated = run_py.main(["--device", "cpu", "--width", "16", "--test-samples", "500", "--eval-only", "--resume",
                             str(out / "checkpoint_latest.pth"), "--out-dir", str(tmp_path / "eval")])
    assert evaluated["test_acc"] == pytest.approx(record["test_acc"], abs=1e-12) and evaluated["epoch"] == 2
    assert read(tmp_path / "eval/metrics.json") == evaluated


def test_resume_is_bit_identical_with_pfa_lif_and_dropout(tmp_path):
    args = ["--device", "cpu", "--width", "8", "--dropout", "0.3", "--train-samples", "192", "--test-samples", "64",
            "--batch-size", "64", "--t-max", "3"]
    whole = run_py.main([*args, "--epochs", "3", "--out-dir", str(tmp_path / "whole")])
    run_py.main([*args, "--epochs", "1", "--out-dir", str(tmp_path / "parts")])
    resumed = run_py.main([*args, "--epochs", "3", "--out-dir", str(tmp_path / "parts"),
                           "--resume", str(tmp_path / "parts/checkpoint_latest.pth")])
    assert resumed == whole
    a = torch.load(tmp_path / "whole/checkpoint_latest.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "parts/checkpoint_latest.pth", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_data_dir_in_torchvision_layout_matches_torchvision(tmp_path):
    from torchvision.datasets import FashionMNIST

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for packed in DEBIAN_DIR.glob("*.gz"):
        (raw / packed.stem).write_bytes(gzip.decompress(packed.read_bytes()))
    ours = load_fashion_mnist(str(tmp_path), train=False)
    theirs = FashionMNIST(str(tmp_path), train=False)
    assert torch.equal(ours.images, theirs.data) and torch.equal(ours.labels, theirs.targets)
    image, label = ours[7]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert label == int(theirs.targets[7])


def test_no_data_anywhere_names_the_three_ways(tmp_path, monkeypatch):
    import torchvision.datasets

    from pfa.data import fashion_mnist

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(fashion_mnist, "DOWNLOAD_ROOT", tmp_path / "data")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(UserError) as e:
        load_fashion_mnist(None, train=True)
    message = str(e.value)
    assert "--data-dir DIR" in message and "apt-get install dataset-fashion-mnist" in message
    assert "torchvision downloads them" in message and "\n" not in message


def test_truncated_idx_file(tmp_path):
    for packed in DEBIAN_DIR.glob("*.gz"):
        shutil.copy(packed, tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:5000]))
    with pytest.raises(UserError, match="is truncated: its header says"):
        load_fashion_mnist(str(tmp_path), train=False)


def assert_one_line_error(capsys, argv, expected):
    with pytest.raises(SystemExit) as e:
        run_py.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err


@pytest.mark.parametrize(("make", "argv", "expected"), [
    (None, ["--data-dir", "{tmp}/absent"], "--data-dir {tmp}/absent does not exist"),
    (lambda tmp: (tmp / "empty").mkdir(), ["--data-dir", "{tmp}/empty"], "holds no Fashion-MNIST idx files"),
    (None, ["--resume", "{tmp}/absent.pth"], "does not exist"),
    (lambda tmp: (tmp / "c.pth").write_text("weights"), ["--resume", "{tmp}/c.pth"], "is not a PyTorch checkpoint"),
    (lambda tmp: (tmp / "c.yaml").write_text("width: [16"), ["--config", "{tmp}/c.yaml"], "is not valid YAML"),
    (lambda tmp: (tmp / "c.yaml").write_text("widht: 16"), ["--config", "{tmp}/c.yaml"], "unknown key(s) widht"),
    (None, ["--width", "0"], "--width must be a positive integer, got 0"),
    (None, ["--attention", "se"], "argument --attention: invalid choice: 'se'"),
    (None, ["--dropout", "1"], "--dropout must be in [0, 1), got 1.0"),
    (None, ["--batch-size", "many"], "invalid int value: 'many'"),
    (None, ["--train-samples", "70000"], "--train-samples 70000 is more than the 60000 samples"),
    (None, ["--attention", "none", "--save-attention", "3"], "--save-attention draws PFA's maps"),
    (None, ["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "gpu"], "--device"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, make, argv, expected):
    if make:
        make(tmp_path)
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert_one_line_error(capsys, [*SMALL, "--epochs", "1", "--out-dir", str(out), *argv],
                          expected.replace("{tmp}", str(tmp_path)))
    assert not out.exists()


def test_bad_checkpoints_leave_an_existing_run_untouched(trained, tmp_path, capsys):
    out, _ = trained
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((out / "checkpoint_latest.pth").read_bytes()[:100_000])
    cases = [
        (["--resume", str(truncated)], "is truncated or corrupt"),
        (["--width", "8", "--resume", str(out / "checkpoint_best.pth")],
         "--width 8 contradicts the run being resumed (width: 16 in "),
        ([], "already holds a run (checkpoint_latest.pth)"),
    ]
    for argv, expected in cases:
        assert_one_line_error(capsys, [*SMALL, "--epochs", "3", "--out-dir", str(out), *argv], expected)
    assert before == {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_defaults_are_the_reference_recipe():
    cfg = parse_config(FMNISTConfig, [])
    assert (cfg.width, cfg.epochs, cfg.batch_size, cfg.lr, cfg.t_max, cfg.dropout) == (128, 200, 128, 1e-3, 64, 0.7)
    assert (cfg.time_steps, cfg.rank, cfg.attention, cfg.loss) == (4, 4, "pfa", "mse")


def test_quick_recipe_changes_only_what_its_file_says(capsys):
    quick = parse_config(FMNISTConfig, ["--quick"])
    full = parse_config(FMNISTConfig, [])
    changed = {k for k, v in quick.to_dict().items() if full.to_dict()[k] != v}
    assert changed == {"quick", *yaml.safe_load((recipe_folder("fmnist") / "quick.yaml").read_text())}
    assert parse_config(FMNISTConfig, ["--quick", "--epochs", "1"]).epochs == 1


@pytest.mark.slow
def test_quick_profile_meets_its_promise(tmp_path):
    """The README's main command: <= 10 minutes on 2 CPU cores, >= 88 % on all 10,000 test images."""
    started = time.perf_counter()
    record = run_py.main(["--quick", "--device", "cpu", "--out-dir", str(tmp_path / "quick")])
    assert record["test_acc"] >= 0.88
    assert time.perf_counter() - started <= 600


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(tmp_path, amp):
    record = run_py.main(["--device", "cuda", "--amp", amp, "--width", "16", "--train-samples", "512",
                          "--test-samples", "256", "--epochs", "2", "--out-dir", str(tmp_path / amp)])
    assert all(torch.isfinite(torch.tensor(v)) for k, v in record.items() if k != "epoch")
    state = torch.load(tmp_path / amp / "checkpoint_latest.pth", weights_only=True)
    assert bool(state["scaler"]) == (amp == "fp16")


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        run_py.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "--save-attention" in text and f"--attention {{{','.join(attention_kinds())}}}" in text
