import torch

from mixerlab.layers.aux_loss import collect_aux_losses, report_aux_loss


def test_collects_inside_and_drops_outside():
    report_aux_loss("outside", torch.tensor(5.0))
    with collect_aux_losses() as aux:
        report_aux_loss("balance", torch.tensor(1.5))
        report_aux_loss("balance", torch.tensor(0.5))
        report_aux_loss("z", torch.tensor(0.25))
    assert aux.by_name() == {"balance": 2.0, "z": 0.25}
    assert float(aux.total()) == 2.25
    with collect_aux_losses() as empty:
        pass
    assert float(empty.total()) == 0.0


def test_gradient_flows_through_total():
    w = torch.tensor(2.0, requires_grad=True)
    with collect_aux_losses() as aux:
        report_aux_loss("l", w * 3)
    aux.total().backward()
    assert float(w.grad) == 3.0
