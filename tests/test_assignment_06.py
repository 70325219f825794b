"""06_matryoshka_gradients: the reference passes, other correct answers pass, plausible mistakes lose points."""

import pytest

from nbharness import assert_caught, assert_full_marks, run_assignment

A = "06_matryoshka_gradients"
SMALL = {"N_TRAIN": 512, "N_TEST": 256, "N_EPOCHS": 2, "HEAD_EPOCHS": 2}  # demo runs shrink; graded cells do not


def test_reference_solution_gets_full_marks():
    report = run_assignment(A, params=SMALL)
    assert_full_marks(report, 15)  # + 7 points graded by hand


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


def test_differently_written_correct_answers_get_full_marks():
    report = run_assignment(A, replace=CORRECT, params=SMALL)
    assert_full_marks(report)


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
