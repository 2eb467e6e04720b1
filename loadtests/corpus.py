"""A built-in corpus of realistic embedding inputs: short queries, sentences and long passages.

Lengths follow what embedding services see in practice: mostly search queries and single
sentences, some paragraphs, and a few documents long enough to be truncated by the model.
Sampling is seeded per user, so runs are repeatable.
"""

from __future__ import annotations

import random

QUERIES = [
    "cheap flights to lisbon",
    "how to reset my password",
    "best running shoes for flat feet",
    "python list comprehension example",
    "symptoms of vitamin d deficiency",
    "kubernetes pod stuck in pending",
    "weather tomorrow berlin",
    "return policy for online orders",
    "what is retrieval augmented generation",
    "vegan lasagna recipe",
    "translate good morning to japanese",
    "nearest pharmacy open now",
    "Wie spät ist es in Tokio?",
    "¿Dónde está la estación de tren?",
    "fix leaking kitchen tap",
    "gpu out of memory error pytorch",
]

SENTENCES = [
    "The delivery arrived two days late, but the package was intact and the product works as described.",
    "Our quarterly revenue grew by twelve percent, driven mostly by subscriptions in the European market.",
    "Please update the shipping address on my account before the next order is dispatched.",
    "The patient reported mild headaches and fatigue over the past three weeks, with no fever.",
    "A transformer encoder maps each token to a contextual vector using stacked self-attention layers.",
    "The museum's new wing displays sculptures from the early Renaissance alongside modern installations.",
    "I have been a customer for six years and this is the first time I have had to contact support.",
    "Rainfall this spring was well above average, which delayed planting across most of the region.",
    "The contract may be terminated by either party with thirty days' written notice.",
    "Click the gear icon in the top right corner, then choose Security and enable two-factor login.",
    "Das Hotel liegt direkt am Fluss und bietet einen schönen Blick auf die Altstadt.",
    "Le train de nuit pour Vienne part à vingt-deux heures depuis la gare de l'Est.",
    "She finished the marathon in under four hours despite the heat and a sore ankle. 🏃‍♀️",
    "Latency at the 99th percentile matters more to users than the average response time.",
]

_PARAGRAPH_SENTENCES = SENTENCES + [
    "Several reviewers noted that the battery life falls short of the advertised eighteen hours.",
    "The committee will meet again next month to review the revised budget proposal in detail.",
    "Model serving systems batch concurrent requests to make better use of the accelerator.",
    "Independent tests found the water quality within safe limits at all twelve sampling sites.",
    "The author spent a decade collecting letters, diaries and photographs for the biography.",
    "Traffic on the northern bypass is expected to ease once the new bridge opens in autumn.",
]


def paragraph(rng: random.Random, n_sentences: int) -> str:
    return " ".join(rng.choice(_PARAGRAPH_SENTENCES) for _ in range(n_sentences))


# (weight, generator): ~55% queries, ~30% sentences, ~12% paragraphs, ~3% long documents
# (300-700 words: past all-MiniLM-L6-v2's 256-token window, so the runtime truncates them).
_KINDS = [
    (55, lambda rng: rng.choice(QUERIES)),
    (30, lambda rng: rng.choice(SENTENCES)),
    (12, lambda rng: paragraph(rng, rng.randint(3, 8))),
    (3, lambda rng: paragraph(rng, rng.randint(20, 45))),
]
_WEIGHTS = [w for w, _ in _KINDS]


def sample_text(rng: random.Random) -> str:
    (_, make), = rng.choices(_KINDS, weights=_WEIGHTS)
    return make(rng)


def sample_batch(rng: random.Random, max_items: int = 8) -> list[str]:
    """Most requests carry one text; some carry a small batch, as clients that embed lists do."""
    n = rng.choices([1, 2, 4, max_items], weights=[70, 15, 10, 5])[0]
    return [sample_text(rng) for _ in range(n)]
