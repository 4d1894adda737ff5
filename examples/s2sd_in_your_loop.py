"""S2SD in your own training loop: no main.py, no flags; a toy backbone on random tensors.

    python examples/s2sd_in_your_loop.py

S2SD takes the embeddings, the labels and the backbone's pooled features; its target heads and their losses
live inside it, so their parameters go to your optimizer through `s2sd.param_groups()` (docs/python_api.md).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import metrics  # noqa: E402
from criteria import S2SD, MultiSimilarityLoss  # noqa: E402

torch.manual_seed(0)
n_classes, in_dim, feature_dim, embed_dim = 8, 100, 64, 32
backbone = torch.nn.Sequential(torch.nn.Linear(in_dim, feature_dim), torch.nn.ReLU())  # inputs -> pooled features
head = torch.nn.Linear(feature_dim, embed_dim)                                          # the embedding layer
s2sd = S2SD(MultiSimilarityLoss(), lambda width: MultiSimilarityLoss(), feature_dim=feature_dim,
            target_dims=(128, 256), T=1.0, w=10.0, head_lr=1e-3)
optimizer = torch.optim.Adam([{"params": [*backbone.parameters(), *head.parameters()], "lr": 1e-3},
                              *s2sd.param_groups()])

centres = torch.randn(n_classes, in_dim)  # each class: a centre plus noise of the same size
labels = torch.arange(n_classes).repeat_interleave(4)
for step in range(60):
    pooled = backbone(centres[labels] + torch.randn(len(labels), in_dim))
    embeds = F.normalize(head(pooled), dim=1)
    loss = s2sd(embeds, labels, features=pooled)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 20 == 0 or step == 59:
        terms = ", ".join(f"{name} {value.item():.4f}" for name, value in s2sd.last_terms.items())
        print(f"step {step:2d}: loss {loss.item():.4f} ({terms})")

with torch.no_grad():
    test_labels = torch.arange(n_classes).repeat_interleave(10)
    test = F.normalize(head(backbone(centres[test_labels] + torch.randn(len(test_labels), in_dim))), dim=1)
print("Recall@1 on new samples:", metrics.compute_metrics(test, test_labels, ["e_recall@1"])["e_recall@1"])
