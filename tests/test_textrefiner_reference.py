"""Reference numerics: our vectorised modules against a plain, loop-based re-derivation.

The ``ref_*`` functions below are written from REFERENCE.md section 1 (the authors'
release) and the paper's Eqs. 2-11, one scalar loop at a time, in float64; they share
no code with ``textrefiner.modeling``.
"""
import copy
import math

import pytest
import torch
import torch.nn as nn

from textrefiner.modeling import (
    FeatureAggregation, FeatureAlignment, LocalCache, TextRefiner, regularization_loss, semantic_loss,
    semantic_token_set,
)

TOL = dict(rtol=1e-6, atol=1e-6)


def _unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [x / sum(e) for x in e]


def _rows(t):
    return [list(map(float, row)) for row in t.detach()]


def ref_update_release(A, tokens, momentum):
    A, u = _rows(A), [_unit(v) for v in _rows(tokens)]
    M, N = len(A), len(u)
    S = [[_dot(u[i], A[j]) for j in range(M)] for i in range(N)]
    assign = [max(range(M), key=lambda j: S[i][j]) for i in range(N)]
    new = []
    for j in range(M):
        p = _softmax([S[i][j] for i in range(N)])  # softmax over ALL tokens for entry j
        members = [i for i in range(N) if assign[i] == j]
        if members:
            total = [sum(p[i] / max(p) * u[i][c] for i in members) for c in range(len(A[j]))]
            entry = [momentum * a + (1 - momentum) * s for a, s in zip(A[j], total)]
        else:
            entry = A[j]
        new.append(_unit(entry))
    return torch.tensor(new, dtype=torch.float64)


def ref_update_paper(A, tokens, momentum):
    A, v = _rows(A), _rows(tokens)
    M, N = len(A), len(v)
    D = [_softmax([_dot(_unit(v[i]), _unit(A[j])) for j in range(M)]) for i in range(N)]  # Eq. 2
    assign = [max(range(M), key=lambda j: D[i][j]) for i in range(N)]  # Eq. 3
    new = []
    for j in range(M):
        members = [i for i in range(N) if assign[i] == j]
        if members:  # Eq. 4
            total = [sum(D[i][j] * v[i][c] for i in members) for c in range(len(A[j]))]
            new.append([momentum * a + (1 - momentum) * s for a, s in zip(A[j], total)])
        else:
            new.append(A[j])
    return torch.tensor(new, dtype=torch.float64)


def ref_read(A, text):
    A = _rows(A)
    out = []
    for t in _rows(text):
        w = _softmax([_dot(_unit(t), _unit(a)) for a in A])  # Eq. 5
        out.append([sum(w[j] * A[j][c] for j in range(len(A))) for c in range(len(t))])  # Eq. 6
    return torch.tensor(out, dtype=torch.float64)


def ref_aggregate(text, detail, weight, alpha):
    out = []
    for t, e in zip(_rows(text), _rows(detail)):
        x = t + e  # list concatenation: [t, E_bar]
        out.append([t[r] + alpha * _dot(_rows(weight)[r], x) for r in range(len(t))])  # Eq. 7
    return torch.tensor(out, dtype=torch.float64)


def ref_semantic_set(aligned, attention, k, with_cls):
    out = []
    for tokens, att in zip(aligned, attention):
        order = sorted(range(len(att)), key=lambda p: -float(att[p]))[:k]
        picked = ([tokens[0]] if with_cls else []) + [tokens[p + 1] for p in order]
        mean = tokens.sum(0) / tokens.shape[0]
        out.append(torch.stack(picked + [mean]))
    return torch.stack(out)


def ref_semantic_loss(token_set, text, labels, scale):
    losses = []
    for tokens, y in zip(token_set, labels):
        for s in _rows(tokens):
            logits = [scale * _dot(s, t) for t in _rows(text)]
            losses.append(-math.log(_softmax(logits)[int(y)]))
    return sum(losses) / len(losses)


def ref_regularization(refined, text):
    diffs = [abs(a - b) for r, t in zip(_rows(refined), _rows(text)) for a, b in zip(_unit(r), t)]
    return sum(diffs) / len(diffs)


@pytest.fixture
def cache_and_tokens():
    """Ten entries, tokens clustered around three of them: most entries receive no token."""
    g = torch.Generator().manual_seed(0)
    cache = LocalCache(num_entries=10, dim=8, momentum=0.8).double()
    centres = cache.entries[[1, 4, 7]]
    tokens = centres.repeat_interleave(12, dim=0) * 3 + 0.3 * torch.randn(36, 8, generator=g, dtype=torch.float64)
    return cache, tokens.reshape(3, 12, 8)


def test_cache_is_initialised_as_normalised_uniform_noise():
    torch.manual_seed(0)
    cache = LocalCache(25, 512)
    torch.manual_seed(0)
    raw = torch.rand(25, 512)
    torch.testing.assert_close(cache.entries, raw / raw.norm(dim=-1, keepdim=True))
    assert "entries" in dict(cache.named_buffers()) and not list(cache.parameters())


@pytest.mark.parametrize("rule,ref", [("release", ref_update_release), ("paper", ref_update_paper)])
def test_cache_update_equals_reference(cache_and_tokens, rule, ref):
    cache, tokens = cache_and_tokens
    cache.update_rule = rule
    before = cache.entries.clone()
    expected = ref(before, tokens.reshape(-1, 8), 0.8)
    cache.update(tokens)
    torch.testing.assert_close(cache.entries, expected, **TOL)
    untouched = [j for j in range(10) if j not in (1, 4, 7)]
    changed = [j for j in range(10) if not torch.allclose(cache.entries[j], before[j])]
    assert untouched and set(changed) <= {1, 4, 7}


@pytest.mark.parametrize("rule,ref", [("release", ref_update_release), ("paper", ref_update_paper)])
def test_cache_update_equals_reference_when_best_tokens_go_elsewhere(rule, ref):
    """Unclustered tokens: for some entry, the token that scores highest against it is assigned to
    another entry, so normalising by the maximum over ALL tokens (the release) differs from
    normalising by the maximum over the entry's own tokens."""
    g = torch.Generator().manual_seed(3)
    cache = LocalCache(num_entries=6, dim=8, momentum=0.8).double()
    cache.update_rule = rule
    tokens = torch.randn(2, 20, 8, generator=g, dtype=torch.float64)
    before = cache.entries.clone()
    scores = torch.nn.functional.normalize(tokens.reshape(-1, 8), dim=-1) @ before.t()
    assign, best = scores.argmax(dim=1), scores.argmax(dim=0)
    assert any(assign[best[j]] != j and (assign == j).any() for j in range(6)), "the case is exercised"
    expected = ref(before, tokens.reshape(-1, 8), 0.8)
    cache.update(tokens)
    torch.testing.assert_close(cache.entries, expected, **TOL)


def test_read_and_aggregation_equal_reference(cache_and_tokens):
    cache, _ = cache_and_tokens
    g = torch.Generator().manual_seed(1)
    text = torch.nn.functional.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=-1)
    detail = cache.read(text)
    torch.testing.assert_close(detail, ref_read(cache.entries, text), **TOL)
    agg = FeatureAggregation(8, alpha=0.2).double()
    torch.testing.assert_close(agg(text, detail), ref_aggregate(text, detail, agg.linear.weight, 0.2), **TOL)


@pytest.mark.parametrize("semantic_set,with_cls", [("release", True), ("paper", False)])
def test_semantic_set_and_loss_equal_reference(semantic_set, with_cls):
    g = torch.Generator().manual_seed(2)
    aligned = torch.randn(3, 10, 8, generator=g, dtype=torch.float64)
    attention = torch.rand(3, 9, generator=g, dtype=torch.float64)
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=g, dtype=torch.float64), dim=-1)
    labels = torch.tensor([0, 3, 1])
    got = semantic_token_set(aligned, attention, topk=5, semantic_set=semantic_set)
    expected = ref_semantic_set(aligned, attention, 5, with_cls)
    assert got.shape == (3, 7 if with_cls else 6, 8)
    torch.testing.assert_close(got, expected, **TOL)
    loss = semantic_loss(got, text, labels, torch.tensor(100.0, dtype=torch.float64))
    assert loss.item() == pytest.approx(ref_semantic_loss(got, text, labels, 100.0), rel=1e-6)


def test_regularization_loss_equals_reference():
    g = torch.Generator().manual_seed(3)
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=g, dtype=torch.float64), dim=-1)
    refined = text + 0.3 * torch.randn(4, 8, generator=g, dtype=torch.float64)
    assert regularization_loss(refined, text).item() == pytest.approx(ref_regularization(refined, text), rel=1e-6)


def test_alignment_equals_the_release_1x1_convolution_form():
    torch.manual_seed(4)
    ours = FeatureAlignment(8, 6).double().train()
    conv = nn.Sequential(nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 1)).double().train()
    with torch.no_grad():
        conv[0].weight.copy_(ours.fc1.weight[:, :, None, None])
        conv[0].bias.copy_(ours.fc1.bias)
        conv[3].weight.copy_(ours.fc2.weight[:, :, None, None])
        conv[3].bias.copy_(ours.fc2.bias)
    tokens = torch.randn(3, 5, 8, dtype=torch.float64)
    expected = conv(tokens.reshape(15, 8, 1, 1)).reshape(3, 5, 6)
    torch.testing.assert_close(ours(tokens), expected, **TOL)
    torch.testing.assert_close(ours.norm.running_var, conv[1].running_var, **TOL)


def test_head_composes_the_pieces_and_updates_after_reading():
    torch.manual_seed(5)
    head = TextRefiner(dim=8, token_dim=8, cache_size=6).double().train()
    twin = copy.deepcopy(head)
    text = torch.nn.functional.normalize(torch.randn(4, 8, dtype=torch.float64), dim=-1)
    tokens = torch.randn(2, 10, 8, dtype=torch.float64)
    attention = torch.rand(2, 9, dtype=torch.float64)
    labels = torch.tensor([1, 2])
    entries_before = head.cache.entries.clone()
    out = head(text, tokens, attention, labels, torch.tensor(100.0, dtype=torch.float64))
    # t' is read from the cache as it was BEFORE this step's update
    expected_refined = ref_aggregate(text, ref_read(entries_before, text), head.aggregation.linear.weight, 0.2)
    torch.testing.assert_close(out.refined, expected_refined, **TOL)
    # the update writes this step's ALIGNED tokens
    with torch.no_grad():
        aligned = twin.alignment(tokens)
    torch.testing.assert_close(head.cache.entries, ref_update_release(entries_before, aligned.reshape(-1, 8), 0.8), **TOL)
    semantic_set = ref_semantic_set(aligned, attention, 5, with_cls=True)
    assert out.losses["semantic"].item() == pytest.approx(ref_semantic_loss(semantic_set, text, labels, 100.0), rel=1e-6)
    assert out.losses["regularization"].item() == pytest.approx(ref_regularization(out.refined, text), rel=1e-6)
    # evaluation: no losses, no update
    head.eval()
    frozen = head.cache.entries.clone()
    assert head(text).losses == {} and torch.equal(head.cache.entries, frozen)
