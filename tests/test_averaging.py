"""The weight average (train.ema): its arithmetic, and that training validates and keeps it."""

import pytest
import torch
from torch import nn

from conftest import TINY, compose, events
from seq2seq.training import Trainer, train
from seq2seq.training.averaging import WeightAverage
from seq2seq.training.checkpoint import load_checkpoint


def tied_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5))
    model[1].weight = model[0].weight  # tied, as tie_embeddings does: one parameter under two names
    return model


def test_average_follows_the_formula_and_keeps_tied_names():
    model = tied_model()
    average = WeightAverage(model, decay=0.5)
    assert average.rate(0) == pytest.approx(0.9) and average.rate(1) == pytest.approx(1 - 2 / 11)
    assert average.rate(10**6) == pytest.approx(0.5)  # the warm-up ends at the decay
    start = {k: v.clone() for k, v in model.state_dict().items()}
    want = {k: v.clone() for k, v in start.items()}
    for n in (1, 2, 3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        rate = 1 - min(0.5, (1 + n) / (10 + n))
        want = {k: w + rate * (model.state_dict()[k] - w) for k, w in want.items()}
        average.update(n)
    state = average.state_dict()
    assert set(state) == {"0.weight", "1.weight", "1.bias"}
    for key in state:
        torch.testing.assert_close(state[key], want[key])
    assert state["0.weight"] is state["1.weight"]  # still one tensor
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    with average.applied():
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, want[key])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0)  # the trained weights are back


def test_load_state_dict_restores_the_average():
    model = tied_model()
    average = WeightAverage(model, decay=0.9)
    saved = {k: v + 3.0 for k, v in model.state_dict().items()}
    average.load_state_dict(saved)
    for key, value in average.state_dict().items():
        torch.testing.assert_close(value, saved[key])
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


@pytest.mark.slow
def test_training_validates_and_keeps_the_average(corpus_root, tmp_path):
    config = compose([*TINY, f"data.root={corpus_root}", "train.max_steps=30", "train.ema=0.9"])
    train(config, tmp_path / "run")
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert set(last["trained_model"]) == set(last["model"])
    assert any(not torch.equal(last["model"][k], last["trained_model"][k]) for k in last["model"])
    logged = {e.step: e.value for e in events(tmp_path / "run").Scalars("valid/loss")}
    # the logged validation is of the averaged weights, which best.pt and last.pt["model"] hold
    trainer = Trainer(config, tmp_path / "check")
    for payload in (best, last):
        trainer.model.load_state_dict(payload["model"])
        step = payload["progress"]["step"]
        assert trainer.validate()["loss"] == pytest.approx(logged[step], rel=1e-6)
