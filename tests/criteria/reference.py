"""Slow, obviously-correct loss computations (Python loops over anchors and tuples) used as test oracles."""
from __future__ import annotations

import math

import torch


class FixedMiner:
    """A miner that returns the triplets it was given, so a loss can be checked on known tuples."""

    name = "fixed"
    OUTPUT = "triplets"

    def __init__(self, triplets):
        self.triplets = torch.as_tensor(triplets, dtype=torch.long).reshape(-1, 3)
        self.bound = None

    def bind(self, criterion):
        self.bound = criterion

    def __call__(self, batch, labels):
        return self.triplets


class FixedTuplesMiner(FixedMiner):
    """Returns fixed NPairTuples / LiftedTuples under the registry name a loss allows (`npair`, `lifted`)."""

    def __init__(self, tuples, name):
        self.tuples, self.name, self.bound = tuples, name, None
        self.OUTPUT = {"npair": "npairs", "lifted": "lifted"}[name]

    def __call__(self, batch, labels):
        return self.tuples


def all_triplets(labels):
    labels = labels.tolist()
    return [(a, p, n) for a in range(len(labels)) for p in range(len(labels)) for n in range(len(labels))
            if a != p and labels[a] == labels[p] and labels[n] != labels[a]]


def dist(x, i, j):
    return torch.sqrt(((x[i] - x[j]) ** 2).sum() + 1e-8)


def triplet_loss(x, triplets, margin):
    terms = [torch.relu(((x[a] - x[p]) ** 2).sum() - ((x[a] - x[n]) ** 2).sum() + margin) for a, p, n in triplets]
    return sum(terms) / len(terms)


def contrastive_loss(x, triplets, pos_margin, neg_margin):
    pos = [torch.relu(dist(x, a, p) - pos_margin) for a, p, _ in triplets]
    neg = [torch.relu(neg_margin - dist(x, a, n)) for a, _, n in triplets]
    return sum(pos) / len(pos) + sum(neg) / len(neg)


def margin_loss(x, labels, triplets, beta, margin, nu):
    total, count = 0.0, 0
    for a, p, n in triplets:
        b = beta[labels[a]]
        pos = torch.relu(dist(x, a, p) - b + margin)
        neg = torch.relu(b - dist(x, a, n) + margin)
        total = total + pos + neg + nu * b
        count += int(pos > 0) + int(neg > 0)
    return total / max(count, 1)


def multisimilarity_loss(x, labels, alpha, beta, eps, lam):
    sim = x @ x.T
    terms = []
    for i in range(len(x)):
        pos = [j for j in range(len(x)) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(len(x)) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        min_pos = min(float(sim[i, j]) for j in pos)
        max_neg = max(float(sim[i, j]) for j in neg)
        kept_neg = [j for j in neg if float(sim[i, j]) + eps > min_pos]
        kept_pos = [j for j in pos if float(sim[i, j]) - eps < max_neg]
        if not kept_pos or not kept_neg:
            continue
        pos_term = torch.log(1 + sum(torch.exp(-alpha * (sim[i, j] - lam)) for j in kept_pos)) / alpha
        neg_term = torch.log(1 + sum(torch.exp(beta * (sim[i, j] - lam)) for j in kept_neg)) / beta
        terms.append(pos_term + neg_term)
    if not terms:
        return x.sum() * 0.0
    return sum(terms) / len(terms)


def kl_rows(teacher_sim, student_sim, temperature):
    """T^2/B sum_i sum_j p_ij log(p_ij / q_ij), written out with explicit row softmaxes."""
    total = 0.0
    for i in range(teacher_sim.shape[0]):
        p = torch.exp(teacher_sim[i] / temperature) / torch.exp(teacher_sim[i] / temperature).sum()
        q = torch.exp(student_sim[i] / temperature) / torch.exp(student_sim[i] / temperature).sum()
        total = total + (p * (torch.log(p) - torch.log(q))).sum()
    return total * temperature**2 / teacher_sim.shape[0]


def isfinite_grad(t):
    return t.grad is not None and bool(torch.isfinite(t.grad).all()) and not math.isnan(float(t.grad.abs().sum()))
