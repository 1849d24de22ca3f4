import pytest
import torch
import torch.nn.functional as F

from seq2seq.loss import sequence_loss
from seq2seq.model import PAD


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_matches_cross_entropy_value_and_gradient(smoothing):
    torch.manual_seed(0)
    logits = torch.randn(4, 6, 13, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 13, (4, 6))
    target[1, 3:] = PAD
    target[3, 1:] = PAD
    loss, nll = sequence_loss(logits, target, smoothing)
    mask = target != PAD
    ref = F.cross_entropy(logits[mask], target[mask], label_smoothing=smoothing, reduction="sum")
    ref_nll = F.cross_entropy(logits[mask], target[mask], reduction="sum")
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert nll.item() == pytest.approx(ref_nll.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, logits)
    (ref_grad,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(grad, ref_grad.to(grad.dtype), rtol=1e-5, atol=1e-6)
    assert torch.all(grad[~mask] == 0)  # padding gets no gradient
