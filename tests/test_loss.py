import pytest
import torch
import torch.nn.functional as F

from seq2seq.data.vocab import PAD
from seq2seq.training.loss import generator_loss


def reference_loss(logits, target, smoothing):
    """Summed smoothed loss and NLL over the non-PAD positions, by torch's cross_entropy."""
    logits, target = logits.reshape(-1, logits.size(-1)), target.reshape(-1)
    mask = target != PAD
    loss = F.cross_entropy(logits[mask].float(), target[mask], label_smoothing=smoothing, reduction="sum")
    nll = F.cross_entropy(logits[mask].float(), target[mask], reduction="sum")
    return loss, nll


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_matches_cross_entropy_value_and_gradient(smoothing):
    torch.manual_seed(0)
    generator = torch.nn.Linear(8, 13).double()
    features = torch.randn(4, 6, 8, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 13, (4, 6))
    target[1, 3:] = PAD
    target[3, 1:] = PAD
    loss, nll = generator_loss(features, generator, target, smoothing, 5)
    ref, ref_nll = reference_loss(generator(features), target, smoothing)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert nll.item() == pytest.approx(ref_nll.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, features)
    (ref_grad,) = torch.autograd.grad(ref, features)
    torch.testing.assert_close(grad, ref_grad.to(grad.dtype), rtol=1e-5, atol=1e-6)
    assert torch.all(grad[target == PAD] == 0)  # padding gets no gradient


def plain_and_fused(features, generator, target, smoothing, chunk):
    """Loss, NLL and the gradients of features, weight and bias: generator + cross_entropy, then generator_loss."""
    results = []
    for fused in (False, True):
        generator.zero_grad()
        x = features.detach().requires_grad_()
        if fused:
            loss, nll = generator_loss(x, generator, target, smoothing, chunk)
        else:
            loss, nll = reference_loss(generator(x), target, smoothing)
        (loss * 0.5).backward()  # a scale other than 1 reaches every gradient
        results.append(
            (loss.detach(), nll.detach(), x.grad, generator.weight.grad.clone(), generator.bias.grad.clone())
        )
    return results


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_generator_loss_matches_generator_then_loss(chunk):
    torch.manual_seed(0)
    generator = torch.nn.Linear(8, 13).double()
    features = torch.randn(3, 7, 8, dtype=torch.float64)
    target = torch.randint(1, 13, (3, 7))
    target[1, 4:] = PAD
    plain, fused = plain_and_fused(features, generator, target, 0.1, chunk)
    for a, b in zip(plain, fused):  # float32 softmax in both; torch's autograd gradient vs the closed form
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert torch.all(fused[2][1, 4:] == 0)  # padded positions pass no gradient back


def test_generator_loss_under_bf16_autocast_matches_the_plain_path():
    torch.manual_seed(0)
    generator = torch.nn.Linear(32, 300)
    features = torch.randn(4, 50, 32)
    target = torch.randint(1, 300, (4, 50))
    target[2, 30:] = PAD
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain, fused = plain_and_fused(features, generator, target, 0.1, 64)
    assert fused[0].dtype == torch.float32 and fused[3].dtype == torch.float32
    torch.testing.assert_close(fused[0], plain[0], rtol=1e-3, atol=0)  # loss: float32 softmax either way
    for a, b in zip(plain[2:], fused[2:]):  # gradients: bfloat16 matmuls either way
        torch.testing.assert_close(b, a, rtol=0.02, atol=0.02 * a.abs().max().item())


def test_generator_loss_without_autograd_gives_the_same_values():
    """Validation takes the chunked loss under inference_mode, where no logits gradient is kept."""
    torch.manual_seed(0)
    generator = torch.nn.Linear(8, 13).double()
    features = torch.randn(3, 7, 8, dtype=torch.float64)
    target = torch.randint(1, 13, (3, 7))
    target[0, 2:] = PAD
    with_grad = generator_loss(features, generator, target, 0.1, 4)
    with torch.inference_mode():
        without = generator_loss(features, generator, target, 0.1, 4)
    assert not without[0].requires_grad
    torch.testing.assert_close(without[0], with_grad[0].detach())
    torch.testing.assert_close(without[1], with_grad[1].detach())
    reference = reference_loss(generator(features), target, 0.1)
    torch.testing.assert_close(without[1], reference[1].detach(), rtol=1e-6, atol=1e-7)
