"""torch.optim's implementation switches (foreach, fused, capturable) are accepted with no
effect, so code and framework factories written for torch work unchanged; differentiable=True
is refused with the reason."""

import itertools

import pytest
import torch

import fusedlr
from fusedlr import schedules as S

FLAGS = {
    fusedlr.SGD: ("foreach", "fused"),
    fusedlr.Adam: ("foreach", "fused", "capturable"),
    fusedlr.AdamW: ("foreach", "fused", "capturable"),
}


def _trajectory(opt_cls, **flags):
    torch.manual_seed(3)
    p = torch.randn(4097)
    opt = opt_cls([p], lr=0.01, schedule=S.CosineAnnealingLR(5), **flags)
    for _ in range(4):
        p.grad = torch.randn_like(p)
        opt.step()
    return p


@pytest.mark.parametrize("opt_cls", list(FLAGS), ids=lambda c: c.__name__)
def test_torch_flags_are_accepted_and_change_nothing(opt_cls):
    plain = _trajectory(opt_cls)
    names = FLAGS[opt_cls]
    for values in itertools.product([None, True, False], repeat=len(names)):
        flags = dict(zip(names, values, strict=True))
        if flags.get("capturable") is None and "capturable" in flags:
            flags["capturable"] = False
        assert torch.equal(_trajectory(opt_cls, **flags, differentiable=False), plain)


@pytest.mark.parametrize("opt_cls", list(FLAGS), ids=lambda c: c.__name__)
def test_differentiable_is_refused_with_the_reason(opt_cls):
    with pytest.raises(ValueError, match="differentiable=True is not supported.*autograd"):
        opt_cls([torch.randn(3)], lr=0.1, differentiable=True)


@pytest.mark.parametrize("opt_cls", list(FLAGS), ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", ["foreach", "fused", "differentiable"])
def test_flag_of_the_wrong_type_names_the_argument(opt_cls, name):
    with pytest.raises(TypeError, match=f"{name} must be"):
        opt_cls([torch.randn(3)], lr=0.1, **{name: "yes"})


def test_sgd_has_no_capturable_like_torch():
    with pytest.raises(TypeError, match="capturable"):
        fusedlr.SGD([torch.randn(3)], lr=0.1, capturable=True)
