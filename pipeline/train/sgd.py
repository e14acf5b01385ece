"""SGD with momentum, weight decay and Nesterov: torch.optim.SGD's update, without its start-up cost.

Every method of `torch.optim.Optimizer` imports `torch._dynamo` on first call (~1.5 s per
process, paid by every training stage of `dvc repro`), and no documented option avoids it.
This class applies the same per-tensor update as torch's default (non-foreach) SGD path,
op for op, so the weights are bit-identical to torch.optim.SGD's on the CPU
(tests/test_speed.py checks it), and its `state_dict` has torch's layout
({'state': {index: {'momentum_buffer': tensor}}, 'param_groups': [...]}).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


class SGD:
    """w <- w - lr * b, b <- momentum * b + (g + weight_decay * w) (b = the first gradient at step 1);
    Nesterov uses g + weight_decay * w + momentum * b instead of b."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov needs momentum > 0")
        self.defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}
        self.param_groups = [{**self.defaults, "params": list(params)}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, momentum, decay, nesterov = group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if decay != 0:
                    grad = grad.add(p, alpha=decay)
                if momentum != 0:
                    buf = self.state.get(p, {}).get("momentum_buffer")
                    if buf is None:
                        buf = grad.detach().clone()
                        self.state[p] = {"momentum_buffer": buf}
                    else:
                        buf.mul_(momentum).add_(grad, alpha=1)
                    grad = grad.add(buf, alpha=momentum) if nesterov else buf
                p.add_(grad, alpha=-lr)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        index = {id(p): i for i, p in enumerate(self._params())}
        groups, start = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": list(range(start, start + n))})
            start += n
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        params = self._params()
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("SGD.load_state_dict: parameter groups do not match")
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k in self.defaults})
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            self.state[p] = {k: v.to(device=p.device, dtype=p.dtype) for k, v in s.items() if torch.is_tensor(v)}
