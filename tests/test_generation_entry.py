"""Generation/main_fsvae.py end to end on a real Fashion-MNIST subset: learning, pictures, metrics, resume, errors."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from run_outputs import FLAGS, check_outputs
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pfa.tasks import recipe_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--config", str(recipe_folder("generation") / "fashion.yaml"), "--device", "cpu", "--workers", "0",
    "--time-steps", "2", "--k", "4", "--latent-dim", "16", "--rank", "4", "--batch-size", "16", "--images", "16",
]  # fmt: skip


def load_entry():
    spec = importlib.util.spec_from_file_location("main_fsvae", ROOT / "Generation/main_fsvae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


main = load_entry()


pytestmark = pytest.mark.usefixtures("one_thread")


def scalars(run_dir: Path, tag: str) -> list[float]:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def user_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_training_lowers_the_reconstruction_loss_and_writes_pictures(tmp_path):
    out = tmp_path / "run"
    main([*TINY, "--epochs", "3", "--train-samples", "96", "--test-samples", "32", "--fid-every", "0",
          "--out-dir", str(out), *FLAGS])
    recon = scalars(out, "recon/loss")
    assert len(recon) == 3 and recon[-1] < 0.9 * recon[0]
    record = json.loads((out / "metrics.json").read_text())
    assert record["epoch"] == 3 and {"recon_loss", "distance_loss", "test_recon_loss"} <= set(record)
    # 16 test images (the first batch): 2 rows of originals, each followed by its row of reconstructions, 8 a row;
    # torchvision's grid pads 2 px around 32 px tiles.
    assert Image.open(out / "reconstructions.png").size == (8 * 34 + 2, 4 * 34 + 2)
    assert Image.open(out / "samples.png").size == (8 * 34 + 2, 2 * 34 + 2)
    for epoch in (1, 2, 3):
        for name in ("reconstructions", "samples"):
            assert (out / "images" / f"epoch_{epoch:04d}_{name}.png").is_file()
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("images/samples")) == 3
    for name in ("config.yaml", "checkpoint_latest.pth", "checkpoint_best.pth"):
        assert (out / name).is_file()
    report = check_outputs(out)  # FSVAE's PFA on the input, its LIF layers
    assert report["parameters"]["attention"] > 0 and len(report["spike_rates"]) >= 8


def test_resume_continues_exactly_and_records_the_autoencoder_fid(tmp_path):
    common = [*TINY, "--train-samples", "48", "--test-samples", "32", "--fid-samples", "32",
              "--fid-autoencoder-epochs", "1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    main([*common, "--epochs", "2", "--out-dir", str(straight)])
    main([*common, "--epochs", "1", "--out-dir", str(split)])
    main([*common, "--epochs", "2", "--out-dir", str(split), "--resume", str(split / "checkpoint_latest.pth")])
    a = torch.load(straight / "checkpoint_latest.pth", weights_only=True)["model"]
    b = torch.load(split / "checkpoint_latest.pth", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    record_a = json.loads((straight / "metrics.json").read_text())
    record_b = json.loads((split / "metrics.json").read_text())
    assert record_a == record_b
    assert record_a["autoencoder_fid"] > 0


def test_ann_vae_baseline_trains_through_the_same_entry(tmp_path):
    out = tmp_path / "ann"
    main([*TINY, "--model", "ann-vae", "--attention", "none", "--epochs", "1", "--train-samples", "32",
          "--test-samples", "16", "--fid-every", "0", "--out-dir", str(out)])
    record = json.loads((out / "metrics.json").read_text())
    assert record["recon_loss"] > 0 and record["distance_loss"] >= 0
    assert (out / "samples.png").is_file()


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--model", "fsvae-large"], "--model fsvae-large needs --input-size 64"),
        (["--model", "ann-vae"], "--model ann-vae has no spike input for PFA; add --attention none"),
        (["--k", "0"], "--k must be a positive integer, got 0"),
        (["--attention", "se"], "invalid choice"),
        (["--fid-samples", "1"], "--fid-samples must be at least 2"),
    ],
)
def test_bad_config_gives_one_line_and_exit_2(extra, expected, tmp_path, capsys):
    assert expected in user_error([*TINY, *extra, "--out-dir", str(tmp_path / "run")], capsys)
    assert not (tmp_path / "run").exists()


def test_bad_yaml_key_and_missing_data(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("dataset: fashion\nlatent: 128\n")
    assert "unknown key(s) latent" in user_error(["--config", str(config)], capsys)
    err = user_error([*TINY, "--dataset", "mnist", "--data-dir", str(tmp_path)], capsys)
    assert "mnist not found" in err and "MNIST/raw" in err
    assert "--data-dir is required for cifar10" in user_error([*TINY, "--dataset", "cifar10"], capsys)
