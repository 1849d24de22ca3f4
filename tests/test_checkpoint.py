import pickle

import pytest
import torch

from seq2seq.errors import CheckpointError
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.translator import Translator


def test_checkpoint_loads_with_weights_only(trained_run):
    payload = torch.load(trained_run / "best.pt", weights_only=True)
    assert {"config", "vocab", "model", "progress"} <= payload.keys()
    assert isinstance(payload["vocab"]["src_model"], bytes)
    last = load_checkpoint(trained_run / "last.pt")
    assert {"optimizer", "scheduler", "rng"} <= last.keys() and last["progress"]["step"] == 60


def test_save_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"config": {}, "vocab": {}, "model": {"w": torch.ones(2)}}, path)
    save_checkpoint({"config": {}, "vocab": {}, "model": {"w": torch.zeros(2)}}, path)
    assert load_checkpoint(path)["model"]["w"].tolist() == [0.0, 0.0]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "config": Exploit(), "vocab": {}, "model": {}}, path)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    assert str(refused.value) == (  # torch's own advice (re-run with weights_only=False) is not passed on
        f"refusing to load {path}: it holds pickled objects other than tensors and plain containers (print), "
        "which could run code; seq2seq writes none in its checkpoints, so use one that seq2seq wrote"
    )
    assert "must never run" not in capsys.readouterr().out
    with open(path, "wb") as f:
        pickle.dump(Exploit(), f)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_truncated_and_foreign_files(tmp_path, trained_run):
    data = (trained_run / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a seq2seq checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_alone_translates(trained_run):
    translator = Translator.from_checkpoint(trained_run / "best.pt")
    out = translator.translate(["Ein Mann fährt Fahrrad.", "", "Zwei Hunde spielen im Schnee."])
    assert len(out) == 3 and out[1] == ""
    assert out[0] and out[2]
