"""Conformance suite: every optimizer configuration and every registered strategy, the same properties.

In the spirit of torch's ``optim_db`` (``torch/testing/_internal/common_optimizers.py``): one table
of configurations (:data:`CONFIGS`), and each property a test parametrised over the whole table:

1. ``state_dict`` round trip, in memory and through ``torch.save``/``torch.load(weights_only=True)``;
2. param groups with their own options, each group's values used;
3. bf16 parameters;
4. parameters without gradients;
5. a stock LR scheduler on the outer optimizer scales both objectives;
6. bad arguments raise a ``ValueError`` naming them;
7. the first step of each objective moves a coordinate by that objective's learning rate;
8. ``copy.deepcopy`` keeps everything (the inner optimizers and the objective).

Every test runs on a parameter of 4,100 elements (8-bit paths: at least 4,096, with a padded last
block) next to small ones. ``DualOptimPlus(fused=True)`` is left out: it compiles for ~25 s and is
compared with the literal reference in ``test_plus.py``.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import torch
from torch.optim import Optimizer

from dualoptim.optim import AdamW8bit, DualOptim, DualOptimPlus, SharedState
from dualoptim.optim.dual import DEFAULT_FORGET, DEFAULT_RETAIN
from dualoptim.optim.quant import BLOCK_SIZE
from dualoptim.optim.shared import DEFAULT_OPTIMIZER
from dualoptim.strategies import FAMILIES, STRATEGIES, OptimizerSettings, build_optimizer

OBJECTIVES = ("forget", "retain")
BIG = (41, 100)  # 4,100 elements: quantised, and 4,100 is not a multiple of the 256-value block
SHAPES = (BIG, (7,), (3, 4))
MIXED = ("forget", "retain", "retain", "forget", "retain", "retain")
FORGET_LR, RETAIN_LR, WEIGHT_DECAY = 3e-2, 1e-2, 1e-2


# -- the table ----------------------------------------------------------------------------------


def rates_group(forget_lr: float, lr: float, weight_decay: float):
    """Group options of an optimizer with a rate per objective (SharedState, DualOptimPlus)."""
    return {"lr": lr, "forget_lr": forget_lr, "weight_decay": weight_decay}, (forget_lr, lr)


def single_rate_group(forget_lr: float, lr: float, weight_decay: float):
    """Group options of DualOptim and AdamW8bit: a group's ``lr`` is every objective's (handed to
    both inner optimizers), so ``forget_lr`` cannot differ per group."""
    return {"lr": lr, "weight_decay": weight_decay}, (lr, lr)


@dataclass(frozen=True)
class Config:
    """One optimizer configuration.

    ``make(params, **options)`` builds it; ``options`` are the semantic overrides it takes, among
    ``lr`` (retain), ``forget_lr``, ``betas``, ``eps``, ``weight_decay`` (all of its weight decays).
    """

    name: str
    make: Callable[..., Optimizer]
    rates: tuple[float, float]  # (forget, retain) learning rates as built
    group: Callable[[float, float, float], tuple[dict[str, Any], tuple[float, float]]]
    options: frozenset[str] = frozenset({"lr", "forget_lr", "betas", "eps", "weight_decay"})
    bad_betas: Any = (1.5, 0.9)
    dual: bool = True  # steps take an objective
    eight_bit: bool = False  # the big parameter gets 8-bit state
    #: objectives stepped by Adam with L2 weight decay, whose first step does not show the decay
    adam_l2: frozenset[str] = frozenset()

    def __str__(self) -> str:
        return self.name


def make_shared(inner: Callable, params, lr=RETAIN_LR, forget_lr=FORGET_LR, **inner_options) -> Optimizer:
    return SharedState(params, partial(inner, **inner_options), lr=lr, forget_lr=forget_lr)


def make_dual_default(params, lr=None, forget_lr=None, weight_decay=None, **forget_options) -> Optimizer:
    """DualOptim with its default AdamW + SGD, exactly ``DualOptim(params)`` without overrides."""
    forget, retain = dict(forget_options), {}
    if forget_lr is not None:
        forget["lr"] = forget_lr
    if lr is not None:
        retain["lr"] = lr
    if weight_decay is not None:
        forget["weight_decay"] = retain["weight_decay"] = weight_decay
    return DualOptim(
        params,
        forget=partial(DEFAULT_FORGET, **forget) if forget else None,
        retain=partial(DEFAULT_RETAIN, **retain) if retain else None,
    )


def make_dual_adamw(
    params, lr=RETAIN_LR, forget_lr=FORGET_LR, weight_decay=WEIGHT_DECAY, **adam
) -> Optimizer:
    return DualOptim(
        params,
        forget=partial(torch.optim.AdamW, lr=forget_lr, weight_decay=weight_decay, **adam),
        retain=partial(torch.optim.AdamW, lr=lr, weight_decay=weight_decay, **adam),
    )


def make_plus(flags: dict, params, lr=RETAIN_LR, forget_lr=FORGET_LR, weight_decay=WEIGHT_DECAY, **options):
    return DualOptimPlus(params, lr=lr, forget_lr=forget_lr, weight_decay=weight_decay, **flags, **options)


def make_adamw8bit(params, lr=RETAIN_LR, weight_decay=WEIGHT_DECAY, **options) -> Optimizer:
    return AdamW8bit(params, lr=lr, weight_decay=weight_decay, **options)


#: How each registered strategy treats param groups: by the optimizer class it builds.
STRATEGY_GROUPS = {
    "joint": rates_group,  # SharedState
    "alternate": rates_group,  # SharedState
    "alternate-2lr": rates_group,  # SharedState
    "dual": single_rate_group,  # DualOptim
    "dual-8bit": single_rate_group,  # DualOptim of AdamW8bit (+ SGD)
    "dual+": rates_group,  # DualOptimPlus
    "dual+-8bit": rates_group,  # DualOptimPlus, 8-bit
    "dual+-ref": rates_group,  # DualOptimPlusRef
}


def make_strategy(name, family, params, lr=RETAIN_LR, forget_lr=FORGET_LR, weight_decay=WEIGHT_DECAY,
                  betas=None, eps=None) -> Optimizer:  # fmt: skip
    if family == "adam" and name == "dual-8bit" and weight_decay > 0:
        weight_decay = 0.0  # AdamW8bit's decay is decoupled, Adam's L2: refused with weight decay (tested below)
    fields: dict[str, Any] = dict(
        forget_lr=forget_lr, retain_lr=lr, family=family,
        weight_decay=weight_decay, forget_weight_decay=weight_decay, plus_weight_decay=weight_decay,
    )  # fmt: skip
    if betas is not None:
        fields.update(betas=betas, forget_betas=betas, plus_betas=(0.9, 0.95, *betas))
    if eps is not None:
        fields["eps"] = eps
    return build_optimizer(name, params, OptimizerSettings(**fields))


def strategy_config(name: str, family: str) -> Config:
    # SGD-family joint/alternate steps one SGD: no betas, no eps anywhere.
    adaptive = not (name in ("joint", "alternate", "alternate-2lr") and family == "sgd")
    return Config(
        name=f"strategy:{name}-{family}",
        make=partial(make_strategy, name, family),
        rates=(FORGET_LR, RETAIN_LR),
        group=STRATEGY_GROUPS[name],
        options=frozenset({"lr", "forget_lr", "weight_decay"} | ({"betas", "eps"} if adaptive else set())),
        eight_bit=name.endswith("8bit"),
        # torch.optim.Adam (L2 decay) is the adam family's optimizer of shared and dual states;
        # the 8-bit and DualOptimPlus variants decay decoupled.
        adam_l2=frozenset(OBJECTIVES)
        if family == "adam" and name in ("joint", "alternate", "alternate-2lr", "dual")
        else frozenset(),
    )


CONFIGS = [
    Config("SharedState-sgd", partial(make_shared, DEFAULT_OPTIMIZER), (FORGET_LR, RETAIN_LR), rates_group,
           options=frozenset({"lr", "forget_lr", "weight_decay"})),
    Config("SharedState-adamw", partial(make_shared, partial(torch.optim.AdamW, weight_decay=WEIGHT_DECAY)),
           (FORGET_LR, RETAIN_LR), rates_group),
    Config("DualOptim-default", make_dual_default, (DEFAULT_FORGET.keywords["lr"], DEFAULT_RETAIN.keywords["lr"]),
           single_rate_group),
    Config("DualOptim-adamw+adamw", make_dual_adamw, (FORGET_LR, RETAIN_LR), single_rate_group),
    Config("DualOptimPlus-foreach", partial(make_plus, {"foreach": True}), (FORGET_LR, RETAIN_LR), rates_group,
           bad_betas=(0.9, 0.95, 1.5, 0.9)),
    Config("DualOptimPlus-forloop", partial(make_plus, {"foreach": False}), (FORGET_LR, RETAIN_LR), rates_group,
           bad_betas=(0.9, 0.95, 1.5, 0.9)),
    Config("DualOptimPlus-8bit", partial(make_plus, {"quantize_base": True, "quantize_delta": True}),
           (FORGET_LR, RETAIN_LR), rates_group, bad_betas=(0.9, 0.95, 1.5, 0.9), eight_bit=True),
    Config("AdamW8bit", make_adamw8bit, (RETAIN_LR, RETAIN_LR), single_rate_group,
           options=frozenset({"lr", "betas", "eps", "weight_decay"}), dual=False, eight_bit=True),
] + [strategy_config(name, family) for name in STRATEGIES.names() for family in FAMILIES]  # fmt: skip

DUAL_CONFIGS = [c for c in CONFIGS if c.dual]


def test_the_table_covers_every_registered_strategy_and_family():
    assert set(STRATEGIES.names()) == set(STRATEGY_GROUPS), "a new strategy needs its row in STRATEGY_GROUPS"
    names = {c.name for c in CONFIGS}
    assert {f"strategy:{s}-{f}" for s in STRATEGIES.names() for f in FAMILIES} <= names


# -- helpers ------------------------------------------------------------------------------------


def make_params(shapes=SHAPES, dtype=torch.float32, seed=0, scale=1.0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(s, generator=generator) * scale).to(dtype).requires_grad_() for s in shapes]


def clone_params(params) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_() for p in params]


def grad_sequence(params, steps: int, seed: int, drop: int | None = None, vary: bool = True):
    """Per step, one gradient per parameter (``None`` at index ``drop``), scales 0.1 to 10."""
    generator = torch.Generator().manual_seed(seed)
    sequence = []
    for step in range(steps):
        scale = 10.0 ** (step % 3 - 1) if vary else 1.0
        grads = [(torch.randn(p.shape, generator=generator) * scale).to(p.dtype) for p in params]
        if drop is not None:
            grads[drop] = None
        sequence.append(grads)
    return sequence


def assign(params, grads) -> None:
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.clone()


def step(config: Config, optimizer: Optimizer, objective: str) -> None:
    if config.dual:
        optimizer.step(objective=objective)
    else:
        optimizer.step()  # a single-objective optimizer: both kinds of step are the same


def run(config: Config, optimizer: Optimizer, params, schedule, grads_per_step) -> None:
    for objective, grads in zip(schedule, grads_per_step):
        assign(params, grads)
        step(config, optimizer, objective)


def snapshot(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def inner_state_dicts(state_dict: dict) -> list[dict]:
    """Every optimizer state dict inside ``state_dict`` (the outer one and those of inner optimizers)."""
    found = []
    if isinstance(state_dict, dict):
        if "state" in state_dict and "param_groups" in state_dict:
            found.append(state_dict)
        for value in state_dict.values():
            found += inner_state_dicts(value)
    return found


def params_with_state(optimizer: Optimizer) -> set[int]:
    """Indices (state-dict numbering) of the parameters that have state in any inner optimizer."""
    return {
        key for sd in inner_state_dicts(optimizer.state_dict()) for key, value in sd["state"].items() if value
    }


def group_counts(optimizer: Optimizer) -> list[int]:
    return [len(sd["param_groups"]) for sd in inner_state_dicts(optimizer.state_dict())]


def has_8bit_state(state_dict: dict) -> bool:
    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from tensors(v)

    return any(t.dtype == torch.uint8 for sd in inner_state_dicts(state_dict) for t in tensors(sd["state"]))


def config_params(configs):
    return pytest.mark.parametrize("config", configs, ids=str)


# -- 1. state_dict round trip --------------------------------------------------------------------


@config_params(CONFIGS)
def test_state_dict_round_trip_in_memory_and_through_torch_save_continues_bit_for_bit(config):
    params = make_params()
    optimizer = config.make(params)
    history = grad_sequence(params, 12, seed=1)
    run(config, optimizer, params, MIXED, history[:6])
    if config.dual:
        optimizer.set_objective("retain")
    saved = optimizer.state_dict()
    assert has_8bit_state(saved) == config.eight_bit
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    from_disk = torch.load(buffer, weights_only=True)

    twins = []
    for state_dict in (saved, from_disk):
        twin_params = clone_params(params)
        twin = config.make(twin_params)
        twin.load_state_dict(state_dict)
        twins.append((twin_params, twin))
    before = snapshot(params)
    # The original keeps stepping too: a twin loaded in memory must not share its buffers.
    for objective, grads in zip(MIXED[::-1], history[6:]):
        for ps, opt in [(params, optimizer), *twins]:
            assign(ps, grads)
            step(config, opt, objective)
    assert not any(torch.equal(a, b) for a, b in zip(params, before))
    for twin_params, twin in twins:
        if config.dual:
            assert twin.objective == "retain"
        for a, b in zip(params, twin_params):
            assert torch.equal(a, b)


# -- 2. param groups -----------------------------------------------------------------------------


@config_params(CONFIGS)
def test_param_groups_use_their_own_learning_rates_and_weight_decay(config):
    options0, rates0 = config.group(2e-2, 5e-3, 0.0)
    options1, rates1 = config.group(6e-2, 3e-2, 0.1)
    # The first step from 1 with gradient 1 moves a coordinate by lr * (1 + weight_decay): SGD's L2
    # term and AdamW's decoupled decay alike (Adam's L2 term cancels in g / |g|).
    for index, objective in enumerate(OBJECTIVES):
        small, big = (torch.ones(s, dtype=torch.float64, requires_grad=True) for s in ((7,), BIG))
        optimizer = config.make([{"params": [small], **options0}, {"params": [big], **options1}])
        small.grad, big.grad = torch.ones_like(small), torch.ones_like(big)
        step(config, optimizer, objective)
        for param, options, rates in ((small, options0, rates0), (big, options1, rates1)):
            decay = 0.0 if objective in config.adam_l2 else options["weight_decay"]
            expected = torch.full_like(param, rates[index] * (1 + decay))
            torch.testing.assert_close(1 - param.detach(), expected, rtol=1e-6, atol=0)

    # Over mixed steps each group behaves as an optimizer of its own with the same options.
    params = make_params(((7,), BIG), seed=2)
    alone_params = clone_params(params)
    optimizer = config.make([{"params": [params[0]], **options0}, {"params": [params[1]], **options1}])
    alone = [config.make([{"params": [p], **o}]) for p, o in zip(alone_params, (options0, options1))]
    for objective, grads in zip(MIXED, grad_sequence(params, 6, seed=3)):
        assign(params, grads)
        assign(alone_params, grads)
        step(config, optimizer, objective)
        for opt in alone:
            step(config, opt, objective)
    for a, b in zip(params, alone_params):
        assert torch.equal(a, b)


@config_params(CONFIGS)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_group_overriding_lr_alone_steps_both_objectives_with_it(config, objective):
    # torch fills the defaults (forget_lr among them) into the group dict it is given: the
    # override must be read before that, or the forget side keeps the default rate.
    default, small = torch.zeros(BIG, requires_grad=True), torch.zeros(7, requires_grad=True)
    optimizer = config.make([{"params": [default]}, {"params": [small], "lr": 0.05}], weight_decay=0.0)
    assign([default, small], [torch.ones(BIG), torch.ones(7)])
    step(config, optimizer, objective)
    rate = config.rates[OBJECTIVES.index(objective)]
    torch.testing.assert_close(default.detach(), torch.full(BIG, -rate), rtol=1e-6, atol=0)
    torch.testing.assert_close(small.detach(), torch.full((7,), -0.05), rtol=1e-6, atol=0)


# -- 3. bf16 parameters --------------------------------------------------------------------------


@config_params(CONFIGS)
def test_bf16_parameters_step_stay_bf16_and_follow_the_float32_update(config):
    params16 = make_params(dtype=torch.bfloat16, seed=4, scale=0.5)
    params32 = [p.detach().float().requires_grad_() for p in params16]  # the same values
    initial = snapshot(params16)
    opt16, opt32 = config.make(params16), config.make(params32)
    for objective, grads in zip(MIXED, grad_sequence(params16, 6, seed=5, vary=False)):
        assign(params16, grads)
        assign(params32, [g.float() for g in grads])
        step(config, opt16, objective)
        step(config, opt32, objective)
    for p16, p32, p0 in zip(params16, params32, initial):
        assert p16.dtype == torch.bfloat16 and torch.isfinite(p16).all()
        moved16, moved32 = (p16.detach().float() - p0.float()), (p32.detach() - p0.float())
        assert moved16.abs().max() > 0
        # bf16 rounds each step to ~0.4% of the value; the update itself must be float32's.
        assert (moved16 - moved32).abs().mean() < 0.2 * moved32.abs().mean()  # measured: <= 0.08


# -- 4. parameters without gradients -------------------------------------------------------------


@config_params(CONFIGS)
@pytest.mark.parametrize("idle", [0, 1], ids=["big-idle", "small-idle"])
def test_parameters_without_gradients_keep_their_value_and_get_no_state(config, idle):
    params = make_params(seed=6)
    initial = snapshot(params)
    optimizer = config.make(params)
    run(config, optimizer, params, MIXED, grad_sequence(params, 6, seed=7, drop=idle))
    busy = set(range(len(params))) - {idle}
    assert torch.equal(params[idle], initial[idle])
    assert {i for i, (p, p0) in enumerate(zip(params, initial)) if not torch.equal(p, p0)} == busy
    assert params_with_state(optimizer) == busy
    # Once it has a gradient it moves and gets state (the checks above can see both).
    assign(params, [torch.ones_like(p) if i == idle else None for i, p in enumerate(params)])
    step(config, optimizer, "forget")
    assert not torch.equal(params[idle], initial[idle])
    assert params_with_state(optimizer) == set(range(len(params)))


# -- 5. LR scheduler on the outer optimizer ------------------------------------------------------


@config_params(CONFIGS)
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_a_stock_scheduler_on_the_outer_optimizer_scales_both_objectives(config):
    params = make_params(dtype=torch.float64, seed=8)
    optimizer = config.make(params)
    run(config, optimizer, params, MIXED[:4], grad_sequence(params, 4, seed=9))
    state = (params, optimizer)
    for objective in OBJECTIVES:
        # From the same state, a unit-gradient step with the lr as is, then halved by the scheduler:
        # every update here is linear in the learning rate, so the displacement halves exactly.
        displacement = {}
        for halve in (False, True):
            ps, opt = copy.deepcopy(state)
            scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5**epoch)
            if halve:
                scheduler.step()
            before = snapshot(ps)
            assign(ps, [torch.ones_like(p) for p in ps])
            step(config, opt, objective)
            displacement[halve] = [p.detach() - b for p, b in zip(ps, before)]
        for full, half in zip(displacement[False], displacement[True]):
            assert full.abs().min() > 0
            torch.testing.assert_close(half, full / 2, rtol=1e-7, atol=1e-13)


# -- 6. bad arguments ------------------------------------------------------------------------------

NAN = float("nan")
#: bad value kind -> (semantic option, value or None for the config's bad betas, message pattern)
BAD_ARGUMENTS = {
    "negative-lr": ("lr", -1.0, r"invalid lr\b|retain_lr must|retain= optimizer.*(learning rate|invalid lr)"),
    "nan-lr": ("lr", NAN, r"invalid lr\b|retain_lr must|retain= optimizer.*(learning rate|invalid lr)"),
    "negative-forget_lr": ("forget_lr", -1.0, r"invalid forget_lr|forget_lr must|forget= optimizer.*(learning rate|invalid lr)"),
    "nan-forget_lr": ("forget_lr", NAN, r"invalid forget_lr|forget_lr must|forget= optimizer.*(learning rate|invalid lr)"),
    "bad-betas": ("betas", None, r"\bbetas?\b|beta_base1|beta parameter"),
    "negative-eps": ("eps", -1.0, r"\beps\b|epsilon"),
    "nan-eps": ("eps", NAN, r"\beps\b|epsilon"),
    "negative-weight_decay": ("weight_decay", -1.0, r"weight_decay"),
    "nan-weight_decay": ("weight_decay", NAN, r"weight_decay"),
}  # fmt: skip


@pytest.mark.parametrize(
    "config, bad",
    [
        pytest.param(config, bad, id=f"{config}-{bad}")
        for config in CONFIGS
        for bad, (option, _, _) in BAD_ARGUMENTS.items()
        if option in config.options
    ],
)
def test_each_bad_argument_raises_a_value_error_naming_it(config, bad):
    option, value, pattern = BAD_ARGUMENTS[bad]
    value = config.bad_betas if value is None else value
    with pytest.raises(ValueError, match=pattern):
        config.make(make_params(seed=10), **{option: value})


@config_params(CONFIGS)
def test_an_empty_parameter_list_or_group_raises_a_value_error(config):
    with pytest.raises(ValueError, match="empty parameter list"):
        config.make([])
    with pytest.raises(ValueError, match="param group 0 is empty"):
        config.make([{"params": []}])


@pytest.mark.parametrize(
    "config, bad",
    [
        pytest.param(config, bad, id=f"{config}-{bad}")
        for config in CONFIGS
        for bad in ("lr", "forget_lr", "weight_decay")
        # DualOptim and AdamW8bit groups have one lr for both objectives: no group forget_lr
        if bad != "forget_lr" or config.group is rates_group
    ],
)
def test_a_refused_param_group_names_its_option_and_leaves_the_optimizer_as_it_was(config, bad):
    values = {"forget_lr": FORGET_LR, "lr": RETAIN_LR, "weight_decay": 0.0, bad: -1.0}
    options, _ = config.group(values["forget_lr"], values["lr"], values["weight_decay"])
    params = make_params(seed=11)
    optimizer = config.make(params)
    counts = group_counts(optimizer)
    extra = torch.zeros(5, requires_grad=True)
    with pytest.raises(ValueError, match=rf"param group 1: invalid {bad}\b"):
        optimizer.add_param_group({"params": [extra], **options})
    assert group_counts(optimizer) == counts
    # Still one consistent optimizer: the valid group is taken (from an iterator, read once) and steps.
    optimizer.add_param_group({"params": iter([extra]), **config.group(FORGET_LR, RETAIN_LR, 0.0)[0]})
    assert group_counts(optimizer) == [n + 1 for n in counts]
    assign([*params, extra], [None] * len(params) + [torch.ones(5)])
    step(config, optimizer, "forget")
    assert (extra < 0).all()


@config_params(DUAL_CONFIGS)
def test_an_unknown_or_missing_objective_raises_a_value_error_and_steps_nothing(config):
    params = make_params(seed=12)
    initial = snapshot(params)
    optimizer = config.make(params)
    assign(params, [torch.ones_like(p) for p in params])
    with pytest.raises(ValueError, match=r"step\(\) needs an objective"):
        optimizer.step()
    for call in (lambda: optimizer.step(objective="both"), lambda: optimizer.set_objective("both")):
        with pytest.raises(ValueError, match="objective must be 'forget' or 'retain', got 'both'"):
            call()
    assert all(torch.equal(p, p0) for p, p0 in zip(params, initial))
    assert params_with_state(optimizer) == set()
    assert optimizer.objective is None


# -- 7. learning rates honoured ------------------------------------------------------------------


@config_params(CONFIGS)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_the_first_step_of_each_objective_moves_by_its_learning_rate(config, objective):
    # From 0 with gradient 1: SGD moves by lr * g, Adam by lr * g / (|g| + eps); no weight decay.
    params = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    optimizer = config.make(params, weight_decay=0.0)
    assign(params, [torch.ones_like(p) for p in params])
    step(config, optimizer, objective)
    rate = config.rates[OBJECTIVES.index(objective)]
    for param in params:
        torch.testing.assert_close(param.detach(), torch.full_like(param, -rate), rtol=1e-6, atol=0)


# -- 8. deepcopy -----------------------------------------------------------------------------------


@config_params(CONFIGS)
def test_a_deep_copy_keeps_the_objective_and_the_state_and_continues_identically(config):
    params = make_params(seed=13)
    optimizer = config.make(params)
    history = grad_sequence(params, 8, seed=14)
    run(config, optimizer, params, MIXED[:4], history[:4])
    if config.dual:
        optimizer.set_objective("forget")
    copy_params, copied = copy.deepcopy((params, optimizer))
    for grads in history[4:]:
        for ps, opt in ((params, optimizer), (copy_params, copied)):
            assign(ps, grads)
            opt.step()  # the objective set before the copy
    for a, b in zip(params, copy_params):
        assert torch.equal(a, b)
    assert params_with_state(copied) == set(range(len(params)))


# -- a specific fault: the 8-bit code of DualOptimPlus's base second moment ------------------------


def test_plus_8bit_base_second_moment_keeps_the_unsigned_codes_resolution():
    """The base second moment is never negative and is stored with the unsigned code (8 decades,
    127 values in the top one); every other DualOptimPlus moment can be negative and uses the
    signed code (63 values in the top decade). Storing it with the signed code would double its
    rounding error: seen through the de-quantised state (the float32 state that an 8-bit state
    dict loads into), after every step each value must lie within half a step of the unsigned
    top decade, ``0.9 / 127 / 2`` of its block's maximum, of the exact update of the previous
    state; the signed code's error reaches ``0.9 / 63 / 2``."""
    betas = (0.9, 0.95, 0.9, 0.95)
    param = torch.randn(BIG, generator=torch.Generator().manual_seed(15)).requires_grad_()
    optimizer = DualOptimPlus([param], lr=1e-3, betas=betas, quantize_base=True, quantize_delta=True)
    float_param = param.detach().clone().requires_grad_()
    float_view = DualOptimPlus([float_param], lr=1e-3, betas=betas)

    def base_second_moment() -> torch.Tensor:
        float_view.load_state_dict(optimizer.state_dict())  # 8-bit state -> float32 state
        assert float_view.state[float_param]["base"]["exp_avg_sq"].dtype == torch.float32
        return float_view.state[float_param]["base"]["exp_avg_sq"].clone()

    unsigned_half_step, signed_half_step = 0.9 / 127 / 2, 0.9 / 63 / 2
    generator = torch.Generator().manual_seed(16)
    previous = torch.zeros(BIG)
    worst = 0.0
    for objective in MIXED:
        grad = torch.randn(BIG, generator=generator) * torch.rand(BIG, generator=generator)
        param.grad = grad.clone()
        optimizer.step(objective=objective)
        exact = previous * betas[3] + (1 - betas[3]) * grad * grad
        stored = base_second_moment()
        pad = (-exact.numel()) % BLOCK_SIZE
        blocks = torch.cat([exact.view(-1), exact.new_zeros(pad)]).view(-1, BLOCK_SIZE)
        absmax = blocks.amax(dim=1, keepdim=True).expand_as(blocks).reshape(-1)[: exact.numel()].view(BIG)
        error = ((stored - exact).abs() / absmax).max().item()
        assert error <= unsigned_half_step + 1e-6, f"relative error {error:.5f} after a {objective} step"
        worst = max(worst, error)
        previous = stored
    # The bound is tight for the unsigned code, and far below the signed code's error.
    assert unsigned_half_step * 0.9 < worst < 0.6 * signed_half_step


def test_an_8bit_adam_family_strategy_with_weight_decay_is_refused():
    settings = OptimizerSettings(forget_lr=FORGET_LR, retain_lr=RETAIN_LR, family="adam", weight_decay=0.01)
    with pytest.raises(ValueError, match="8-bit strategies of the adam family need weight_decay"):
        build_optimizer("dual-8bit", make_params(), settings)
