"""06_matryoshka_gradients: the reference passes, other correct answers pass, plausible mistakes lose points,
shortcuts into lrlab.matryoshka score 0 with the "write it yourself" message, honest warnings cost nothing, and the
numbers the text quotes are the numbers the executed notebook prints (over seeds, with the paper's beside them)."""

import io
import re
import tokenize

import pytest

from nbharness import (
    assert_caught,
    assert_full_marks,
    assert_no_stderr,
    assert_shortcut_caught,
    run_assignment,
    source_notebook,
)

A = "06_matryoshka_gradients"
# the demo runs and the seeds shrink; the graded cells are unchanged
SMALL = {"N_TRAIN": 512, "N_TEST": 256, "N_EPOCHS": 2, "HEAD_EPOCHS": 2, "N_SEEDS": 2}
GRADED = ["info_nce", "nested_loss", "prefix_grad_size", "block_stats", "start_stage", "mc_matryoshka"]


def test_reference_solution_gets_full_marks():
    report = run_assignment(A, params=SMALL)
    assert_full_marks(report, 15)  # + 7 points graded by hand
    assert_no_stderr(report)


def _cells():
    return [(c.metadata.get("nbgrader", {}), c) for c in source_notebook(A).cells]


def test_the_points_table_of_the_first_cell_matches_the_graded_cells():
    intro = source_notebook(A).cells[0].source
    rows = re.findall(r"^\| (\S+) \| (.+?) \| (\d+) \|$", intro, flags=re.M)
    auto = sum(int(p) for _, what, p in rows if "by hand" not in what)
    by_hand = sum(int(p) for _, what, p in rows if "by hand" in what)
    tests = [m for m, c in _cells() if m.get("grade") and not m.get("solution")]
    written = [m for m, c in _cells() if m.get("grade") and m.get("solution")]
    assert auto == sum(m["points"] for m in tests) == 15
    assert by_hand == sum(m["points"] for m in written) == 7
    # one point per multiple-choice question, one test cell each
    mc = [m for m in tests if m["grade_id"].startswith("mc_")]
    assert [m["points"] for m in mc] == [1, 1, 1]


def test_every_code_exercise_is_checked_as_own_work_in_its_visible_and_hidden_tests():
    cells = {m.get("grade_id"): c.source for m, c in _cells()}
    for name in GRADED[:-1]:
        src = cells[f"{name}_tests"]
        visible, _, hidden = src.partition("### BEGIN HIDDEN TESTS")
        assert f'_{name} = checks.own_work({name}, "{name}", FORBID' in visible, name
        assert 'FORBID = ["lrlab.matryoshka"]' in visible
        # every call of the learner's function goes through the wrapper, visible and hidden
        for part in (visible, hidden):
            assert _calls(part, f"_{name}"), name
            assert not _calls(part.replace(f"own_work({name},", "own_work(_,"), name), name


def _calls(src: str, name: str) -> int:
    """How many times ``src`` calls ``name(...)`` (in code, not in strings; ``x.name(...)`` does not count)."""
    toks = list(tokenize.generate_tokens(io.StringIO(src).readline))
    return sum(1 for i, t in enumerate(toks[:-1]) if t.type == tokenize.NAME and t.string == name
               and toks[i + 1].string == "(" and not (i and toks[i - 1].string == "."))


# ---------------------------------------------------------------- other correct answers, several idioms
CORRECT = {
    "info_nce": '''
def info_nce(q, d, temperature=0.05):
    qn = q / q.norm(dim=1, keepdim=True)
    dn = d / d.norm(dim=1, keepdim=True)
    sims = qn @ dn.T / temperature
    return -(sims.diagonal() - torch.logsumexp(sims, dim=1)).mean()
''',
    "nested_loss": '''
def nested_loss(q, d, dims=(192, 96, 48), temperature=0.05):
    total = torch.zeros(())
    for k in sorted(dims):
        total = total + info_nce(q[..., :k], d[..., :k], temperature=temperature)
    return total
''',
    "prefix_grad_size": '''
def prefix_grad_size(encoder, q, d, dim, temperature=0.05):
    W = encoder.proj.weight
    loss = info_nce(encoder(q)[:, :dim], encoder(d)[:, :dim], temperature)
    (g,) = torch.autograd.grad(loss, W)
    return float(g[:dim].abs().sum() / g[:dim].numel())
''',
    "block_stats": '''
def block_stats(grads, blocks):
    n = grads.shape[0]
    result = {}
    for name, rows in blocks.items():
        g = grads[:, rows[0]:rows[1], :]
        centred = g - g.mean(dim=0, keepdim=True)
        result[name] = dict(mean_abs=float(g.abs().sum() / g.numel()),
                            var=float((centred ** 2).sum(dim=0).div(n - 1).mean()))
    return result
''',
    "start_stage": '''
def start_stage(encoder, dim, lr, optimizer="sgd"):
    encoder.requires_grad_(False)
    part = encoder.proj if dim == encoder.full else encoder.heads[str(dim)]
    part.requires_grad_(True)
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer]
    return cls([p for p in part.parameters()], lr=lr)
''',
    "mc_matryoshka": 'ANSWER_PREFIX24, ANSWER_TRUNCATE, ANSWER_ONE_LR = " b", "a ", "C"',
}

# float64 arithmetic, loops instead of vectorized code, zero_grad() with its default (None gradients), the encoder's
# own methods (allowed: it is given), numpy
CORRECT_FLOAT64_LOOPS = {
    "info_nce": '''
def info_nce(q, d, temperature=0.05):
    q64, d64 = q.double(), d.double()
    losses = []
    for i in range(q64.shape[0]):
        cos = F.cosine_similarity(q64[i:i + 1], d64, dim=1) / temperature
        losses.append(torch.logsumexp(cos, dim=0) - cos[i])
    return torch.stack(losses).mean().to(q.dtype)
''',
    "nested_loss": '''
def nested_loss(q, d, dims=(192, 96, 48), temperature=0.05):
    return torch.stack([info_nce(q[:, :k], d[:, :k], temperature) for k in dims]).sum()
''',
    "prefix_grad_size": '''
def prefix_grad_size(encoder, q, d, dim, temperature=0.05):
    encoder.zero_grad()
    loss = info_nce(encoder.embed(q, encoder.full)[:, :dim], encoder.embed(d, encoder.full)[:, :dim], temperature)
    loss.backward()
    return encoder.proj.weight.grad[:dim].double().abs().mean().item()
''',
    "block_stats": '''
def block_stats(grads, blocks):
    out = {}
    for name, (start, stop) in blocks.items():
        g = grads[:, start:stop].double()
        n = g.shape[0]
        total = torch.zeros_like(g[0])
        total_sq = torch.zeros_like(g[0])
        for step in range(n):
            total += g[step]
            total_sq += g[step] ** 2
        var = (total_sq - total ** 2 / n) / (n - 1)
        out[name] = {"mean_abs": g.abs().mean().item(), "var": var.mean().item()}
    return out
''',
    "start_stage": '''
def start_stage(encoder, dim, lr, optimizer="sgd"):
    for name, p in encoder.named_parameters():
        p.requires_grad_(False)
    (new,) = encoder.modules_for(dim)
    params = []
    for p in new.parameters():
        p.requires_grad = True
        params.append(p)
    name = {"sgd": "SGD", "adam": "Adam"}[optimizer.lower()]
    return getattr(torch.optim, name)(params, lr=lr)
''',
    "mc_matryoshka": 'ANSWER_PREFIX24, ANSWER_TRUNCATE, ANSWER_ONE_LR = "(B)", "a.", "c"',
}

CORRECT_NUMPY_ZEROED = {
    "info_nce": '''
def info_nce(q, d, temperature=0.05):
    logits = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).transpose(0, 1)
    logp = F.log_softmax(logits / temperature, dim=1)
    return -logp.gather(1, torch.arange(len(q)).unsqueeze(1)).mean()
''',
    "nested_loss": '''
def nested_loss(q, d, dims=(192, 96, 48), temperature=0.05):
    total = 0.0
    for k in dims:
        qk, dk = F.normalize(q[:, :k], dim=1), F.normalize(d[:, :k], dim=1)
        total = total + F.cross_entropy(qk @ dk.T / temperature, torch.arange(q.shape[0]))
    return total
''',
    "prefix_grad_size": '''
def prefix_grad_size(encoder, q, d, dim, temperature=0.05):
    for p in encoder.parameters():
        if p.grad is not None:
            p.grad.zero_()
    eq, ed = encoder(q), encoder(d)
    info_nce(eq[:, :dim], ed[:, :dim], temperature).backward()
    g = encoder.proj.weight.grad
    return float(g[:dim].abs().mean())
''',
    "block_stats": '''
import numpy as np

def block_stats(grads, blocks):
    a = grads.detach().cpu().numpy().astype(np.float64)
    return {name: {"mean_abs": float(np.abs(a[:, s:e]).mean()), "var": float(a[:, s:e].var(axis=0, ddof=1).mean())}
            for name, (s, e) in blocks.items()}
''',
    "start_stage": '''
def start_stage(encoder, dim, lr, optimizer="sgd"):
    for module in encoder.modules():
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
    new = encoder.heads[str(dim)] if str(dim) in encoder.heads else encoder.proj
    for p in new.parameters():
        p.requires_grad_(True)
    if optimizer == "adam":
        return torch.optim.Adam(new.parameters(), lr=lr)
    return torch.optim.SGD(new.parameters(), lr=lr, momentum=0.0)
''',
    "mc_matryoshka": 'ANSWER_PREFIX24, ANSWER_TRUNCATE, ANSWER_ONE_LR = "Option B", "A)", "answer: c"',
}


@pytest.mark.parametrize("answers", [CORRECT, CORRECT_FLOAT64_LOOPS, CORRECT_NUMPY_ZEROED],
                         ids=["vectorized", "float64-loops-embed", "numpy-zeroed-grads"])
def test_differently_written_correct_answers_get_full_marks(answers):
    assert set(answers) == set(GRADED)
    report = run_assignment(A, replace=answers, params=SMALL)
    assert_full_marks(report, 15)
    assert_no_stderr(report)


def _fn(signature: str, body: str) -> str:
    return f"def {signature}:\n" + "\n".join("    " + line for line in body.strip().splitlines())


INFO = "info_nce(q, d, temperature=0.05)"
NESTED = "nested_loss(q, d, dims=(192, 96, 48), temperature=0.05)"
PREFIX = "prefix_grad_size(encoder, q, d, dim, temperature=0.05)"
BLOCKS = "block_stats(grads, blocks)"
STAGE = 'start_stage(encoder, dim, lr, optimizer="sgd")'
MISTAKES = {
    # info_nce
    "dot product instead of cosine": ("info_nce", _fn(INFO, '''
logits = q @ d.T / temperature
return F.cross_entropy(logits, torch.arange(len(q)))''')),
    "multiplies by the temperature": ("info_nce", _fn(INFO, '''
logits = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T * temperature
return F.cross_entropy(logits, torch.arange(len(q)))''')),
    "every target is document 0": ("info_nce", _fn(INFO, '''
logits = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T / temperature
return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))''')),
    "documents to queries (transposed logits)": ("info_nce", _fn(INFO, '''
logits = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T / temperature
return F.cross_entropy(logits.T, torch.arange(len(q)))''')),
    "sum over the batch instead of the mean": ("info_nce", _fn(INFO, '''
logits = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T / temperature
return F.cross_entropy(logits, torch.arange(len(q)), reduction="sum")''')),
    "returns a float": ("info_nce", _fn(INFO, '''
logits = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T / temperature
return F.cross_entropy(logits, torch.arange(len(q))).item()''')),
    "hard-coded visible value": ("info_nce", _fn(INFO, '''
return torch.tensor(0.23954, requires_grad=True)''')),
    # nested_loss
    "mean of the prefix losses": ("nested_loss", _fn(NESTED, '''
return sum(info_nce(q[:, :k], d[:, :k], temperature) for k in dims) / len(dims)''')),
    "forgets the smallest prefix": ("nested_loss", _fn(NESTED, '''
return sum(info_nce(q[:, :k], d[:, :k], temperature) for k in dims[:-1])''')),
    "forgets the full size": ("nested_loss", _fn(NESTED, '''
return sum(info_nce(q[:, :k], d[:, :k], temperature) for k in dims if k != q.shape[1])''')),
    "suffixes instead of prefixes": ("nested_loss", _fn(NESTED, '''
return sum(info_nce(q[:, -k:], d[:, -k:], temperature) for k in dims)''')),
    "normalizes the full vector, then cuts it": ("nested_loss", _fn(NESTED, '''
qn, dn = F.normalize(q, dim=1), F.normalize(d, dim=1)
total = 0
for k in dims:
    logits = qn[:, :k] @ dn[:, :k].T / temperature
    total = total + F.cross_entropy(logits, torch.arange(len(q)))
return total''')),
    "the full embedding in every term": ("nested_loss", _fn(NESTED, '''
return sum(info_nce(q, d, temperature) for k in dims)''')),
    # prefix_grad_size
    "averages over all rows": ("prefix_grad_size", _fn(PREFIX, '''
encoder.zero_grad()
info_nce(encoder(q)[:, :dim], encoder(d)[:, :dim], temperature).backward()
return encoder.proj.weight.grad.abs().mean().item()''')),
    "forgets to zero the gradients": ("prefix_grad_size", _fn(PREFIX, '''
info_nce(encoder(q)[:, :dim], encoder(d)[:, :dim], temperature).backward()
return encoder.proj.weight.grad[:dim].abs().mean().item()''')),
    "returns a tensor": ("prefix_grad_size", _fn(PREFIX, '''
encoder.zero_grad()
info_nce(encoder(q)[:, :dim], encoder(d)[:, :dim], temperature).backward()
return encoder.proj.weight.grad[:dim].abs().mean()''')),
    "the nested loss instead of one prefix": ("prefix_grad_size", _fn(PREFIX, '''
encoder.zero_grad()
sizes = [k for k in (192, 96, 48) if k <= dim]
nested_loss(encoder(q), encoder(d), sizes, temperature).backward()
return encoder.proj.weight.grad[:dim].abs().mean().item()''')),
    "mean of signed gradients": ("prefix_grad_size", _fn(PREFIX, '''
encoder.zero_grad()
info_nce(encoder(q)[:, :dim], encoder(d)[:, :dim], temperature).backward()
return encoder.proj.weight.grad[:dim].mean().abs().item()''')),
    # block_stats
    "columns instead of rows": ("block_stats", _fn(BLOCKS, '''
return {name: {"mean_abs": grads[:, :, a:b].abs().mean().item(),
               "var": grads[:, :, a:b].var(dim=0).mean().item()} for name, (a, b) in blocks.items()}''')),
    "slices the steps instead of the rows": ("block_stats", _fn(BLOCKS, '''
return {name: {"mean_abs": grads[a:b].abs().mean().item(),
               "var": grads[a:b].var(dim=0).mean().item()} for name, (a, b) in blocks.items()}''')),
    "|mean g| instead of mean |g|": ("block_stats", _fn(BLOCKS, '''
return {name: {"mean_abs": grads[:, a:b].mean(dim=0).abs().mean().item(),
               "var": grads[:, a:b].var(dim=0).mean().item()} for name, (a, b) in blocks.items()}''')),
    "variance over the elements, not the steps": ("block_stats", _fn(BLOCKS, '''
return {name: {"mean_abs": grads[:, a:b].abs().mean().item(),
               "var": grads[:, a:b].flatten(1).var(dim=1).mean().item()} for name, (a, b) in blocks.items()}''')),
    "biased variance": ("block_stats", _fn(BLOCKS, '''
return {name: {"mean_abs": grads[:, a:b].abs().mean().item(),
               "var": grads[:, a:b].var(dim=0, correction=0).mean().item()} for name, (a, b) in blocks.items()}''')),
    "variance of the mean gradient's elements": ("block_stats", _fn(BLOCKS, '''
return {name: {"mean_abs": grads[:, a:b].abs().mean().item(),
               "var": grads[:, a:b].mean(dim=0).var().item()} for name, (a, b) in blocks.items()}''')),
    "hard-coded visible values": ("block_stats", _fn(BLOCKS, '''
return {"top": {"mean_abs": 1.5, "var": 4.0}, "rest": {"mean_abs": 1.25, "var": 2.5}}''')),
    # start_stage
    "does not freeze the rest": ("start_stage", _fn(STAGE, '''
new = encoder.proj if dim == encoder.full else encoder.heads[str(dim)]
make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
return make(new.parameters(), lr=lr)''')),
    "optimizer still holds the frozen parameters": ("start_stage", _fn(STAGE, '''
for p in encoder.parameters():
    p.requires_grad_(False)
new = encoder.proj if dim == encoder.full else encoder.heads[str(dim)]
for p in new.parameters():
    p.requires_grad_(True)
make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
return make(encoder.parameters(), lr=lr)''')),
    "forgets to unfreeze the new head": ("start_stage", _fn(STAGE, '''
for p in encoder.parameters():
    p.requires_grad_(False)
new = encoder.proj if dim == encoder.full else encoder.heads[str(dim)]
make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
return make(new.parameters(), lr=lr)''')),
    "freezes only the projection": ("start_stage", _fn(STAGE, '''
if dim != encoder.full:
    encoder.proj.requires_grad_(False)
new = encoder.proj if dim == encoder.full else encoder.heads[str(dim)]
new.requires_grad_(True)
make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
return make(new.parameters(), lr=lr)''')),
    "always SGD": ("start_stage", _fn(STAGE, '''
encoder.requires_grad_(False)
new = encoder.proj if dim == encoder.full else encoder.heads[str(dim)]
new.requires_grad_(True)
return torch.optim.SGD(new.parameters(), lr=lr)''')),
    "ignores the learning rate": ("start_stage", _fn(STAGE, '''
encoder.requires_grad_(False)
new = encoder.proj if dim == encoder.full else encoder.heads[str(dim)]
new.requires_grad_(True)
make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
return make(new.parameters(), lr=0.1)''')),
    # multiple choice
    "wrong multiple-choice answer": ("mc_matryoshka",
                                     'ANSWER_PREFIX24, ANSWER_TRUNCATE, ANSWER_ONE_LR = "A", "A", "C"'),
}




@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert_caught(report, grade_id, mistake)


# a recognised mistake gets a hint that names it, not the general one
HINTS = {
    "multiplies by the temperature": "do not multiply",
    "sum over the batch instead of the mean": "SUM over the 3 rows",
    "every target is document 0": "not column 0",
    "mean of the prefix losses": "MEAN of the three prefix losses",
    "forgets the smallest prefix": "smallest prefix (k = 3) is missing",
    "the full embedding in every term": "every term used the full vector",
    "averages over all rows": "mean over all 192 rows",
    "|mean g| instead of mean |g|": "|mean over the steps|",
    "biased variance": "biased variance",
}


@pytest.mark.parametrize("mistake", sorted(HINTS))
def test_a_recognised_mistake_gets_a_hint_that_names_it(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert HINTS[mistake] in report.tests[f"{grade_id}_tests"].error, report.summary()


@pytest.mark.parametrize("wrong, cell", [
    ('"A", "A", "C"', "mc_matryoshka_tests"), ('"B", "C", "C"', "mc_matryoshka_b_tests"),
    ('"B", "A", "a"', "mc_matryoshka_c_tests"),
])
def test_one_wrong_letter_costs_one_point_only(wrong, cell):
    report = run_assignment(A, replace={"mc_matryoshka": f"ANSWER_PREFIX24, ANSWER_TRUNCATE, ANSWER_ONE_LR = {wrong}"},
                            params=SMALL)
    assert report.failed() == [cell], report.summary()
    assert report.score == report.max_score - 1, report.summary()


# One call into lrlab.matryoshka, by any route, in place of the learner's own work: 0 with "write it yourself".
SHORTCUTS = {
    "info_nce (from ... import ... as)": ("info_nce", '''
from lrlab.matryoshka import info_nce as _ready

def info_nce(q, d, temperature=0.05):
    return _ready(q, d, temperature)
'''),
    "nested_loss (import ... as)": ("nested_loss", '''
import lrlab.matryoshka as MM

def nested_loss(q, d, dims=(192, 96, 48), temperature=0.05):
    return MM.matryoshka_loss(q, d, dims, temperature)
'''),
    "nested_loss (functools.partial of the notebook's M)": ("nested_loss", '''
import functools

_term = functools.partial(M.info_nce, temperature=0.05)

def nested_loss(q, d, dims=(192, 96, 48), temperature=0.05):
    return sum(_term(q[:, :k], d[:, :k], temperature=temperature) for k in dims)
'''),
    "prefix_grad_size (importlib)": ("prefix_grad_size", '''
import importlib

def prefix_grad_size(encoder, q, d, dim, temperature=0.05):
    ref = importlib.import_module("lrlab.matryoshka")
    encoder.zero_grad()
    ref.info_nce(encoder(q)[:, :dim], encoder(d)[:, :dim], temperature).backward()
    return encoder.proj.weight.grad[:dim].abs().mean().item()
'''),
    "block_stats (a helper that calls it)": ("block_stats", '''
def _rows(blocks, full):
    import lrlab
    lrlab.matryoshka.check_dims([b - a for a, b in blocks.values()], full)
    return blocks

def block_stats(grads, blocks):
    return {n: {"mean_abs": grads[:, a:b].abs().mean().item(), "var": grads[:, a:b].var(dim=0).mean().item()}
            for n, (a, b) in _rows(blocks, grads.shape[1]).items()}
'''),
    "start_stage (the notebook's M)": ("start_stage", '''
def start_stage(encoder, dim, lr, optimizer="sgd"):
    return M.start_stage(encoder, dim, lr=lr, optimizer=optimizer)
'''),
    "start_stage (M.freeze, then by hand)": ("start_stage", '''
def start_stage(encoder, dim, lr, optimizer="sgd"):
    M.freeze(encoder)
    new = encoder.proj if dim == encoder.full else encoder.heads[str(dim)]
    new.requires_grad_(True)
    return (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(new.parameters(), lr=lr)
'''),
}


@pytest.mark.parametrize("route", sorted(SHORTCUTS))
def test_a_shortcut_into_lrlab_scores_zero_and_says_write_it_yourself(route):
    grade_id, src = SHORTCUTS[route]
    report = run_assignment(A, replace={grade_id: src}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert_shortcut_caught(report, grade_id, grade_id)


WARNS = {
    "info_nce": '''
import warnings

def info_nce(q, d, temperature=0.05):
    if temperature < 0.1:
        warnings.warn("a low temperature makes the softmax sharp", UserWarning)
    logits = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0]))
''',
    "block_stats": '''
import sys
import warnings

def block_stats(grads, blocks):
    print(f"block_stats over {grads.shape[0]} steps", file=sys.stderr)
    warnings.warn("unbiased variance over the steps", RuntimeWarning)
    return {n: {"mean_abs": grads[:, a:b].abs().mean().item(), "var": grads[:, a:b].var(dim=0).mean().item()}
            for n, (a, b) in blocks.items()}
''',
    "nested_loss": '''
import warnings

def nested_loss(q, d, dims=(192, 96, 48), temperature=0.05):
    if list(dims) != sorted(dims, reverse=True):
        warnings.warn("prefix sizes not largest first; the sum does not care", UserWarning)
    warnings.warn(f"summing {len(dims)} prefix losses", UserWarning)
    return sum(info_nce(q[:, :k], d[:, :k], temperature) for k in dims)
''',
    "prefix_grad_size": '''
import sys
import warnings

def prefix_grad_size(encoder, q, d, dim, temperature=0.05):
    encoder.zero_grad()
    info_nce(encoder(q)[:, :dim], encoder(d)[:, :dim], temperature).backward()
    g = encoder.proj.weight.grad
    if dim < encoder.full:
        warnings.warn(f"rows {dim}:{encoder.full} get no gradient from this loss", RuntimeWarning)
    sys.stderr.write("prefix_grad_size: done\\n")
    return g[:dim].abs().mean().item()
''',
    "start_stage": '''
import warnings

def start_stage(encoder, dim, lr, optimizer="sgd"):
    warnings.warn(f"stage {dim}: freezing everything else", UserWarning)
    encoder.requires_grad_(False)
    new = encoder.proj if dim == encoder.full else encoder.heads[str(dim)]
    new.requires_grad_(True)
    return (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(new.parameters(), lr=lr)
''',
}


@pytest.mark.parametrize("grade_id", sorted(WARNS))
def test_honest_code_that_warns_keeps_full_marks(grade_id):
    report = run_assignment(A, replace={grade_id: WARNS[grade_id]}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert f"{grade_id}_tests" not in report.failed(), report.summary()
    assert_no_stderr(report)


# ---------------------------------------------------------------- the text's claims against the executed notebook
NUM = r"([-+]?\d+\.\d+)"
IV = rf"{NUM} \[{NUM}, {NUM}\]"


@pytest.fixture(scope="module")
def executed():
    """The reference solution run with the notebook's own parameters (3 seeds, full epochs): printed text by cell."""
    report = run_assignment(A)
    assert_full_marks(report, 15)
    text = {gid: "".join(o.get("text", "") for o in outs if o.get("output_type") == "stream")
            for gid, outs in report.outputs.items()}
    prose = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in source_notebook(A).cells}
    return text, prose


def _row(table: str, label: str) -> list[tuple[float, float, float]]:
    line = next(line for line in table.splitlines() if line.startswith(label))
    return [tuple(float(x) for x in m) for m in re.findall(IV, line)]


def _diff_row(table: str, label: str) -> list[tuple[float, float, float, int, int]]:
    line = next(line for line in table.splitlines() if line.startswith(label))
    cells = re.findall(rf"{IV}\s+(\d+)/(\d+)", line)
    return [(float(m), float(lo), float(hi), int(k), int(n)) for m, lo, hi, k, n in cells]


@pytest.mark.slow
def test_the_paper_table_backs_the_text_over_seeds(executed):
    out, prose = executed
    table = out["code_seeds_sgd"]
    assert "3 seeds" in table and "read from the figure" in table
    # the paper's ratios, computed from the figure's epoch-0 values 2.717 / 1.093 and 1.124 / 1.037
    assert re.search(r"MRL: mean\|g\| \[0:96\] / \[96:192\]\s+2\.49\s", table)
    assert re.search(r"SMRL: mean\|g\| \[0:96\] / \[96:192\]\s+1\.08\s", table)
    assert "the figure's about 2.5" in prose["md_gap"]
    # "our MRL ratio is about 7 (a little lower in the first epoch)"
    (e1, mean) = _row(table, "MRL: mean|g|")
    assert "our MRL ratio\nis about 7 (a little lower in the first epoch)" in prose["md_gap"]
    assert 6.5 <= mean[1] and mean[2] <= 8.0 and e1[0] < mean[0] and 5.5 <= e1[1]
    # SMRL: "about equal"
    for iv in _row(table, "SMRL: mean|g|"):
        assert 0.95 <= iv[1] and iv[2] <= 1.05
    # "our variance ratio MRL / SMRL is about 10 in the first epoch and larger later"
    (v1, vmean) = _row(table, "variance [0:192], MRL / SMRL")
    assert "about 10 in\nthe first epoch and larger later" in prose["md_gap"]
    assert 8.5 <= v1[1] and v1[2] <= 12.0 and vmean[1] > v1[2]
    # "Divided by mean|g|^2, MRL's noise is still about 2 times SMRL's, and the interval stays above 1 in both columns"
    assert "still about 2 times SMRL's, and the interval stays above 1 in both" in prose["md_gap"]
    for iv in _row(table, "scale-free noise, MRL / SMRL"):
        assert iv[1] > 1.0 and 1.6 <= iv[0] <= 2.7
    # the written answer's numbers: ratio about 7x, raw variance about 10x, scale-free about 2x
    for phrase in ("about 7x over the seeds", "about 2.5 in the paper's figure", "about 10x SMRL's in the first epoch",
                   "MRL's noise is only about 2x SMRL's"):
        assert phrase in " ".join(prose["why_uneven"].split()), phrase
    # "about 1 in the figure, a few hundredths or less here": mean |g| of [0:96] in epoch 1, both methods
    assert "a few hundredths or less here" in prose["md_gap"]
    firsts = [float(x) for x in re.findall(r"mean \|g\| \[0:96\]: (\S+) ->", out["code_025"])]
    assert len(firsts) == 2 and all(0 < x < 0.05 for x in firsts), out["code_025"]
    # the multiple-choice question (c) quotes "about 7 times larger gradients" for MRL's rows [0:96]
    assert "about 7 times larger gradients (part 6)" in prose["md_038"]


@pytest.mark.slow
def test_the_adam_caveat_backs_the_written_answer(executed):
    out, prose = executed
    grad, upd = map(float, re.search(rf"MRL with Adam: gradient ratio {NUM}, update ratio {NUM}",
                                     out["code_029"]).groups())
    assert "the update ratio falls to about 1.4 while the\ngradient ratio is about 10" in prose["why_adam"]
    assert 8.5 <= grad <= 11.5 and 1.25 <= upd <= 1.55


@pytest.mark.slow
def test_the_control_and_the_sgd_rows_back_the_text_over_seeds(executed):
    out, prose = executed
    table = out["code_seeds_adam"]
    text = " ".join((prose["md_036"] + " " + prose["why_control"]).split())
    d96, d48 = _diff_row(table, "SMRL - MRL (Adam)")
    # "SMRL is ahead of MRL at d = 96 and d = 48 in every seed" (with Adam)
    assert "holds here *with Adam*: SMRL is ahead of MRL at $d = 96$ and $d = 48$ in every seed" in text
    assert d96[3] == d96[4] == 3 and d48[3] == d48[4] == 3
    # "SMRL's gain over MRL there, about 0.02"
    assert "SMRL's gain over MRL there, about 0.02" in text and 0.01 <= d48[0] <= 0.03
    # "With plain SGD it is ahead at 96 but behind at 48 in every seed"
    s96, s48 = _diff_row(table, "SMRL - MRL (SGD)")
    assert "With plain SGD it is ahead at 96 but **behind at 48 in every seed**" in text
    assert s96[3] == 3 and s48[3] == 0
    # the control: "At d = 48 it matches or beats SMRL in every seed"; "at d = 96 SMRL keeps a small edge over the
    # control (about half a point, in every seed)"
    c96, c48 = _diff_row(table, "control - SMRL (Adam)")
    assert "At d = 48 it matches or beats SMRL in every seed" in text and c48[3] == 3
    assert "(about half a point, in every seed)" in text and c96[3] == 0 and -0.01 <= c96[0] <= -0.002
    # the 31 % more parameters that part 8 counts
    assert "96,768" in out["code_035"] and "73,728" in out["code_035"]
