import json
import math
import socket
import traceback

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from spikingjelly.activation_based import layer, neuron, surrogate
from torch.utils.data import TensorDataset

from pfa.data.subsets import fixed_subset
from pfa.engine.checkpoint import save_checkpoint
from pfa.engine.config import TrainConfig
from pfa.engine.loop import build_optimizer, fit
from pfa.engine.losses import classification_loss
from pfa.engine.run import Run
from pfa.engine.runlog import metrics_of
from pfa.engine.task import ClassificationTask
from pfa.errors import UserError


class TinySpikingNet(nn.Module):
    """8 features -> 16 LIF -> 3 LIF over T=4 steps, with dropout so that resuming must restore the RNG."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            layer.SeqToANNContainer(nn.Linear(8, 16)), nn.Dropout(0.2), self.lif(),
            layer.SeqToANNContainer(nn.Linear(16, 3)), self.lif(),
        )

    @staticmethod
    def lif():
        return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")

    def forward(self, x):
        return self.layers(x.unsqueeze(0).repeat(4, 1, 1))


def blobs(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    centres = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)) * 2
    return TensorDataset(centres[labels] + torch.randn(n, 8, generator=g), labels)


def config(tmp_path, name="run", **overrides) -> TrainConfig:
    values = {"out_dir": str(tmp_path / name), "epochs": 3, "batch_size": 16, "device": "cpu", "workers": 0,
              "lr": 1e-2, "t_max": 3}
    return TrainConfig(**{**values, **overrides})


def train(cfg, task=None) -> tuple[dict, nn.Module]:
    with Run(cfg, "test") as run:
        model = TinySpikingNet()
        record = fit(run, model, task or ClassificationTask(cfg.loss), blobs(96, 1), blobs(40, 2), arch="Tiny")
    return record, model


def read(path):
    return json.loads(path.read_text())


def test_resume_at_an_epoch_boundary_is_bit_identical(tmp_path):
    whole, whole_model = train(config(tmp_path, "whole"))
    train(config(tmp_path, "parts", epochs=2))
    resumed, resumed_model = train(config(tmp_path, "parts", resume=str(tmp_path / "parts/checkpoint_latest.pth")))
    assert resumed == whole
    initial = TinySpikingNet().state_dict()
    for key, value in whole_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key
    assert any(not torch.equal(initial[k], v) for k, v in whole_model.state_dict().items())
    a = torch.load(tmp_path / "whole/checkpoint_latest.pth", weights_only=True)
    b = torch.load(tmp_path / "parts/checkpoint_latest.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3 and a["scheduler"] == b["scheduler"]
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert read(tmp_path / "whole/metrics.json") == read(tmp_path / "parts/metrics.json")


def test_resume_needs_epochs_left(tmp_path):
    train(config(tmp_path, epochs=1))
    with pytest.raises(UserError, match="has already trained 1 epochs; to go on, give --epochs above 1"):
        train(config(tmp_path, epochs=1, resume=str(tmp_path / "run/checkpoint_latest.pth")))


def test_run_directory_contents(tmp_path):
    record, _ = train(config(tmp_path, epochs=2))
    run_dir = tmp_path / "run"
    assert {p.name for p in run_dir.iterdir()} == {"config.yaml", "tensorboard", "checkpoint_latest.pth",
                                                   "checkpoint_best.pth", "metrics.json", "metrics.jsonl",
                                                   "curves.png"}
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2] and metrics_of(history[-1]) == record
    assert set(history[-1]) - set(record) == {"lr", "seconds", "load1"} and history[-1]["seconds"] > 0
    provenance = yaml.safe_load((run_dir / "config.yaml").read_text())["provenance"]
    assert provenance["host"] == socket.gethostname() and "pytest" in provenance["command"]
    assert provenance["versions"]["torch"] == str(torch.__version__) and provenance["versions"]["spikingjelly"]
    metrics = read(run_dir / "metrics.json")
    assert set(metrics) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "best_test_acc"}
    assert metrics == record and metrics["epoch"] == 2 and 0 <= metrics["test_acc"] <= 1
    assert metrics["test_acc"] * 40 == pytest.approx(round(metrics["test_acc"] * 40))  # every test sample counted once
    assert list((run_dir / "tensorboard").iterdir())


class ClippingTask(ClassificationTask):
    """Exercises every hook the FSVAE entry point relies on."""

    def __init__(self):
        super().__init__("ce")
        self.started, self.steps = [], 0

    def on_epoch_start(self, epoch):
        self.started.append(epoch)

    def after_optimizer_step(self, model):
        self.steps += 1
        with torch.no_grad():
            for p in model.parameters():
                p.clamp_(-0.05, 0.05)

    def on_epoch_end(self, epoch, model, run):
        if run.is_main:
            (run.dir / f"images_{epoch}.txt").write_text("drawn")
        return {"hook_epoch": epoch}


def test_task_hooks(tmp_path):
    task = ClippingTask()
    _, model = train(config(tmp_path, epochs=2, batch_size=32), task)
    assert task.started == [0, 1] and task.steps == 2 * 3
    assert all(p.abs().max() <= 0.05 for p in model.parameters())
    assert read(tmp_path / "run/metrics.json")["hook_epoch"] == 1
    assert (tmp_path / "run/images_1.txt").exists()


class NaNTask(ClassificationTask):
    def on_epoch_start(self, epoch):
        self.epoch, self.step = epoch, 0

    def train_step(self, model, batch):
        result = super().train_step(model, batch)
        if (self.epoch, self.step) == (1, 2):
            result.loss = result.loss * math.nan
        self.step += 1
        return result


def test_nan_loss_stops_at_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(UserError, match=r"became nan at epoch 2, step 3; stopped, the last good checkpoint is"):
        train(config(tmp_path), NaNTask())
    state = torch.load(tmp_path / "run/checkpoint_latest.pth", weights_only=True)
    assert state["epoch"] == 1 and read(tmp_path / "run/metrics.json")["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize(("schedule", "expected_factor"), [
    ({"scheduler": "step", "step_size": 1, "gamma": 0.5}, 0.25),
    ({"scheduler": "step", "step_size": 2, "gamma": 0.1}, 0.1),
    ({"scheduler": "cosine", "t_max": 4}, 0.5),
    ({"scheduler": "none"}, 1.0),
])
def test_schedulers_honour_their_arguments(tmp_path, schedule, expected_factor):
    train(config(tmp_path, epochs=2, **schedule))
    state = torch.load(tmp_path / "run/checkpoint_latest.pth", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-2 * expected_factor)


def test_sgd_uses_momentum_and_weight_decay(tmp_path):
    optimizer = build_optimizer(config(tmp_path, optimizer="sgd", momentum=0.8, weight_decay=1e-4),
                                nn.Linear(2, 2).parameters())
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.8 and optimizer.defaults["weight_decay"] == 1e-4


@pytest.mark.parametrize("name, reference", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_runs_fused_and_updates_as_the_plain_loop_does(tmp_path, name, reference):
    torch.manual_seed(0)
    ours, plain = nn.Linear(8, 3), nn.Linear(8, 3)
    plain.load_state_dict(ours.state_dict())
    optimizer = build_optimizer(config(tmp_path, optimizer=name, weight_decay=1e-2), ours.parameters())
    baseline = reference(plain.parameters(), lr=optimizer.defaults["lr"], weight_decay=1e-2, foreach=False)
    assert type(optimizer) is reference and optimizer.defaults["fused"]
    x, initial = torch.randn(16, 8), [p.detach().clone() for p in ours.parameters()]
    for _ in range(3):
        for model, opt in ((ours, optimizer), (plain, baseline)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b, start in zip(ours.parameters(), plain.parameters(), initial, strict=True):
        torch.testing.assert_close(a, b)
        assert not torch.equal(a, start)


def test_eval_only_reproduces_the_checkpoints_test_metrics(tmp_path):
    record, _ = train(config(tmp_path, epochs=2))
    evaluated, _ = train(config(tmp_path, "eval", eval_only=True, resume=str(tmp_path / "run/checkpoint_latest.pth")))
    assert evaluated == {"epoch": 2, "test_loss": pytest.approx(record["test_loss"]), "test_acc": record["test_acc"]}
    assert read(tmp_path / "eval/metrics.json")["test_acc"] == record["test_acc"]
    assert not (tmp_path / "eval/checkpoint_latest.pth").exists()


def test_a_finished_run_is_never_overwritten(tmp_path):
    train(config(tmp_path, epochs=1))
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    with pytest.raises(UserError, match="already holds a run"):
        train(config(tmp_path, epochs=1))
    assert before == {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}


def test_fixed_subset_is_deterministic_and_checked():
    data = blobs(50, 0)
    a, b = fixed_subset(data, 20, "--train-samples"), fixed_subset(data, 20, "--train-samples")
    assert a.indices == b.indices and len(set(a.indices)) == 20 and a.indices == sorted(a.indices)
    assert fixed_subset(data, None, "--train-samples") is data
    with pytest.raises(UserError, match="--train-samples 51 is more than the 50 samples"):
        fixed_subset(data, 51, "--train-samples")


def test_losses_against_direct_formulas():
    torch.manual_seed(0)
    out, labels = torch.rand(4, 5, 3), torch.tensor([0, 2, 1, 1, 0])
    rate = out.mean(0)
    onehot = torch.zeros(5, 3)
    onehot[range(5), labels] = 1
    assert classification_loss("mse")(out, labels) == pytest.approx(((rate - onehot) ** 2).mean().item())
    assert classification_loss("ce")(out, labels) == pytest.approx(F.cross_entropy(rate, labels).item())
    per_step = sum(F.cross_entropy(out[t], labels) for t in range(4)) / 4
    assert classification_loss("tet")(out, labels) == pytest.approx(per_step.item())
    regularised = 0.7 * per_step + 0.3 * ((out - 1) ** 2).mean()
    assert classification_loss("tet", 0.3)(out, labels) == pytest.approx(regularised.item())


class GradNaNTask(ClassificationTask):
    """A finite loss whose gradients are NaN at epoch 1, step 4."""

    def on_epoch_start(self, epoch):
        self.epoch, self.step = epoch, 0

    def train_step(self, model, batch):
        result = super().train_step(model, batch)
        if (self.epoch, self.step) == (0, 3):
            result.loss = _NaNGrad.apply(result.loss)
        self.step += 1
        return result


class _NaNGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.nan


def test_non_finite_gradients_with_a_finite_loss_stop_at_the_step(tmp_path):
    with pytest.raises(UserError, match=r"the gradients became non-finite at epoch 1, step 4 \(loss 0\.\d+\); stopped, "
                                        r"no epoch had finished, nothing saved"):
        train(config(tmp_path), GradNaNTask())
    assert not (tmp_path / "run/checkpoint_latest.pth").exists() and not (tmp_path / "run/metrics.json").exists()


class InfWeightTask(ClassificationTask):
    """Sets a weight to inf after the last step of the second epoch: no step's loss shows it, the save check does."""

    def __init__(self):
        super().__init__()
        self.steps = 0

    def after_optimizer_step(self, model):
        self.steps += 1
        if self.steps == 12:
            with torch.no_grad():
                next(model.parameters())[0, 0] = math.inf


def test_non_finite_weights_are_never_saved(tmp_path):
    with pytest.raises(UserError, match=r"the weights became non-finite during epoch 2 \(1 of 4 tensors, e\.g\. "
                                        r"layers\.0\.0\.weight\); stopped, the last good checkpoint is"):
        train(config(tmp_path), InfWeightTask())
    state = torch.load(tmp_path / "run/checkpoint_latest.pth", weights_only=True)
    assert state["epoch"] == 1 and not (tmp_path / "run/.checkpoint_latest.pth.tmp").exists()


def test_eval_only_and_resume_refuse_a_non_finite_checkpoint(tmp_path):
    train(config(tmp_path, epochs=1))
    state = torch.load(tmp_path / "run/checkpoint_latest.pth", weights_only=True)
    state["model"]["layers.3.0.bias"][1] = math.nan
    save_checkpoint(tmp_path / "nan.pth", state)
    for extra in ({"eval_only": True}, {}):
        with pytest.raises(UserError, match=r"nan.pth holds non-finite weights \(1 tensors, e.g. layers.3.0.bias\)"):
            train(config(tmp_path, "again", epochs=2, resume=str(tmp_path / "nan.pth"), out_dir=None, **extra))


def test_no_host_synchronisation_per_step(tmp_path, monkeypatch):
    """Reads of tensor values (item, tolist, bool) per run do not grow with the number of steps; the optimiser's own
    step counters (CPU tensors, unless `capturable`) are not device reads and are left out."""
    reads = []
    for name in ("item", "tolist", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original):
            if "torch/optim/" not in traceback.extract_stack(limit=2)[0].filename:
                reads.append(1)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    counts = []
    for batch_size in (32, 8):  # 3 and 12 steps per epoch
        reads.clear()
        train(config(tmp_path, f"b{batch_size}", batch_size=batch_size))
        counts.append(len(reads))
    assert counts[0] == counts[1]


def test_changed_schedule_on_resume_takes_effect_and_is_recorded(tmp_path):
    train(config(tmp_path, epochs=2, scheduler="cosine", t_max=None))  # t_max null: follows --epochs (2)
    latest = str(tmp_path / "run/checkpoint_latest.pth")
    assert torch.load(latest, weights_only=True)["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0)
    train(config(tmp_path, epochs=4, scheduler="cosine", t_max=None, lr=2e-2, resume=latest))
    state = torch.load(latest, weights_only=True)
    # the new schedule (lr 2e-2, T_max 4) as if it had applied from the start: cos(pi * 4 / 4) -> 0 after epoch 4
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert state["config"]["lr"] == 2e-2 and state["scheduler"]["T_max"] == 4
    resumed = yaml.safe_load((tmp_path / "run/config.yaml").read_text())
    assert resumed["lr"] == 2e-2
    assert resumed["provenance"]["resumed"] == [{**resumed["provenance"]["resumed"][0], "at_epoch": 2, "changed": {
        "lr": [1e-2, 2e-2], "t_max": [2, 4]}}]
    lrs = [json.loads(line)["epoch"] for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert lrs == [1, 2, 3, 4]


def test_resume_epoch_3_lr_follows_the_new_schedule(tmp_path):
    train(config(tmp_path, epochs=1, scheduler="step", step_size=1, gamma=0.5))
    latest = str(tmp_path / "run/checkpoint_latest.pth")
    train(config(tmp_path, epochs=2, scheduler="step", step_size=1, gamma=0.1, resume=latest))
    state = torch.load(latest, weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-2 * 0.1 ** 2)


def test_resume_continues_in_its_own_folder(tmp_path):
    train(config(tmp_path, epochs=1))
    latest = str(tmp_path / "run/checkpoint_latest.pth")
    with pytest.raises(UserError, match=r"--resume continues the run in its own folder .*run, but --out-dir is"):
        train(config(tmp_path, "elsewhere", epochs=2, resume=latest))
    record, _ = train(config(tmp_path, epochs=2, resume=latest, out_dir=None))
    assert read(tmp_path / "run/metrics.json") == record and not (tmp_path / "elsewhere").exists()


def test_tensorboard_has_step_losses_and_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record, _ = train(config(tmp_path, epochs=2))
    events = EventAccumulator(str(tmp_path / "run/tensorboard"))
    events.Reload()
    steps = events.Scalars("train/step_loss")
    assert [s.step for s in steps] == list(range(12)) and all(math.isfinite(s.value) for s in steps)
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "test/loss", "test/acc", "run/lr", "run/seconds"} <= tags
    assert [s.value for s in events.Scalars("final/test_acc")] == [pytest.approx(record["test_acc"])]
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    assert len(list((tmp_path / "run/tensorboard").iterdir())) == 1  # one event file
