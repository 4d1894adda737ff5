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
        min_pos = min(float(sim[i, j].detach()) for j in pos)
        max_neg = max(float(sim[i, j].detach()) for j in neg)
        kept_neg = [j for j in neg if float(sim[i, j].detach()) + eps > min_pos]
        kept_pos = [j for j in pos if float(sim[i, j].detach()) - eps < max_neg]
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


def unit(v):
    return v / torch.sqrt((v * v).sum())


def log1p_sum_exp(values):
    """log(1 + sum exp(v)) over a Python list of scalars, written out."""
    return torch.log(1 + sum(torch.exp(v) for v in values))


def npair_loss(x, anchors, positives, negative_sets, l2, clamp=None):
    terms = []
    for a, p, negs in zip(anchors, positives, negative_sets):
        z = [x[a] @ x[n] - x[a] @ x[p] for n in negs]
        if clamp is not None:
            z = [torch.clamp(v, -clamp, clamp) for v in z]
        terms.append(log1p_sum_exp(z))
    norms = [torch.sqrt((x[i] ** 2).sum()) for i in range(len(x))]
    return sum(terms) / len(terms) + l2 * sum(norms) / len(norms)


def angular_term(x, anchors, positives, negative_sets, alpha_degrees):
    t = math.tan(math.radians(alpha_degrees)) ** 2
    terms = []
    for a, p, negs in zip(anchors, positives, negative_sets):
        ua, up = unit(x[a]), unit(x[p])
        terms.append(log1p_sum_exp([4 * t * (ua + up) @ unit(x[n]) - 2 * (1 + t) * ua @ up for n in negs]))
    return sum(terms) / len(terms)


def angular_loss(x, anchors, positives, negative_sets, alpha_degrees, weight, l2):
    npair = npair_loss(x, anchors, positives, negative_sets, 0.0, clamp=50.0)
    norms = [torch.sqrt((x[i] ** 2).sum()) for i in range(len(x))]
    return npair + weight * angular_term(x, anchors, positives, negative_sets, alpha_degrees) + l2 * sum(norms) / len(x)


def lifted_loss(x, anchors, positive_sets, negative_sets, margin, l2):
    terms = []
    for a, pos, neg in zip(anchors, positive_sets, negative_sets):
        pos_term = torch.log(sum(torch.exp(dist(x, a, p)) for p in pos))
        neg_term = torch.log(sum(torch.exp(margin - dist(x, a, n)) for n in neg))
        terms.append(torch.relu(pos_term + neg_term))
    norms = [torch.sqrt((x[i] ** 2).sum()) for i in range(len(x))]
    return sum(terms) / len(terms) + l2 * sum(norms) / len(norms)


def variance(v):
    mean = v.sum() / len(v)
    return ((v - mean) ** 2).sum() / (len(v) - 1)


def snr_loss(x, triplets, margin, reg_lambda):
    terms = [torch.relu(variance(x[a] - x[p]) / variance(x[a]) - variance(x[a] - x[n]) / variance(x[a]) + margin)
             for a, p, n in triplets]
    active = sum(int(t > 0) for t in terms)
    reg = sum(torch.abs(x[a].sum()) for a, _, _ in triplets) / len(triplets)
    return sum(terms) / max(active, 1) + reg_lambda * reg


def quadruplet_loss(x, triplets, fourth, alpha_1, alpha_2):
    """`fourth[t]` is n' of triplet t, or None when the batch has no third class for it."""
    trip = [torch.relu(dist(x, a, p) - dist(x, a, n) + alpha_1) for a, p, n in triplets]
    quad = [torch.relu(dist(x, a, p) - dist(x, n, f) + alpha_2) for (a, p, n), f in zip(triplets, fourth) if f is not None]
    return sum(trip) / len(trip) + (sum(quad) / len(quad) if quad else 0.0)


def histogram_loss(x, labels, n_nodes):
    """Each pair similarity s adds the triangular kernel max(0, 1 - |s - t_r| / Delta) to node t_r."""
    delta = 2.0 / (n_nodes - 1)
    nodes = [-1.0 + r * delta for r in range(n_nodes)]
    pos, neg = [], []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            (pos if labels[i] == labels[j] else neg).append(unit(x[i]) @ unit(x[j]))

    def hist(sims):
        return [sum(torch.relu(1 - torch.abs(s - t) / delta) for s in sims) / len(sims) for t in nodes]

    h_pos, h_neg = hist(pos), hist(neg)
    return sum(h_neg[r] * sum(h_pos[: r + 1]) for r in range(n_nodes))


def proxynca_loss(x, labels, proxies):
    terms = []
    for i in range(len(x)):
        d = [torch.sum((3 * unit(x[i]) - 3 * unit(proxies[c])) ** 2) for c in range(len(proxies))]
        y = int(labels[i])
        terms.append(-torch.log(torch.exp(-d[y]) / sum(torch.exp(-d[c]) for c in range(len(proxies)) if c != y)))
    return sum(terms) / len(terms)


def cross_entropy(logits, y):
    return -torch.log(torch.exp(logits[y]) / sum(torch.exp(v) for v in logits))


def softmax_loss(x, labels, weights, temperature):
    terms = [cross_entropy([unit(x[i]) @ unit(w) / temperature for w in weights], int(labels[i])) for i in range(len(x))]
    return sum(terms) / len(terms)


def arcface_loss(x, labels, weights, margin, scale):
    terms = []
    for i in range(len(x)):
        y = int(labels[i])
        logits = []
        for c, w in enumerate(weights):
            cos = unit(x[i]) @ unit(w)
            if c == y:
                theta = torch.acos(cos)
                cos = torch.cos(theta + margin) if theta <= math.pi - margin else cos - margin * math.sin(margin)
            logits.append(scale * cos)
        terms.append(cross_entropy(logits, y))
    return sum(terms) / len(terms)


def softtriple_loss(x, labels, centroids, n_classes, k, gamma, delta, lam, reg_weight):
    """`centroids` is D x (C K); column c K + j is centroid j of class c."""
    w = [unit(centroids[:, i]) for i in range(centroids.shape[1])]
    terms = []
    for i in range(len(x)):
        y = int(labels[i])
        logits = []
        for c in range(n_classes):
            s = [unit(x[i]) @ w[c * k + j] for j in range(k)]
            q = [torch.exp(v / gamma) / sum(torch.exp(u / gamma) for u in s) for v in s]
            score = sum(qj * sj for qj, sj in zip(q, s))
            logits.append(lam * (score - (delta if c == y else 0.0)))
        terms.append(cross_entropy(logits, y))
    reg = sum(torch.sqrt(2 + 1e-5 - 2 * w[c * k + a] @ w[c * k + b])
              for c in range(n_classes) for a in range(k) for b in range(a + 1, k))
    return sum(terms) / len(terms) + (reg_weight * reg / (n_classes * k * (k - 1)) if k > 1 else 0.0)


def proxyanchor_loss(x, labels, proxies, alpha, delta):
    labels = [int(v) for v in labels]
    pos_terms, neg_terms = [], []
    for c in range(len(proxies)):
        cos = [unit(x[i]) @ unit(proxies[c]) for i in range(len(x))]
        members = [i for i in range(len(x)) if labels[i] == c]
        if members:
            pos_terms.append(log1p_sum_exp([-alpha * (cos[i] - delta) for i in members]))
        neg_terms.append(log1p_sum_exp([alpha * (cos[i] + delta) for i in range(len(x)) if labels[i] != c]))
    return sum(pos_terms) / len(pos_terms) + sum(neg_terms) / len(neg_terms)


def circle_loss(x, labels, m, gamma):
    terms = []
    for i in range(len(x)):
        pos = [j for j in range(len(x)) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(len(x)) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        s = lambda j: unit(x[i]) @ unit(x[j])  # noqa: E731
        lse_p = torch.log(sum(torch.exp(-gamma * max(1 + m - float(s(j).detach()), 0.0) * (s(j) - (1 - m))) for j in pos))
        lse_n = torch.log(sum(torch.exp(gamma * max(float(s(j).detach()) + m, 0.0) * (s(j) - m)) for j in neg))
        terms.append(torch.log(1 + torch.exp(lse_p + lse_n)))
    return sum(terms) / len(terms)
