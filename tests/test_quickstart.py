"""The quickstart language: its exact entropy rate against a Monte-Carlo estimate."""

import numpy as np

from xlpretrain.data.quickstart import QuickstartLanguage


def test_entropy_rate_matches_monte_carlo_estimate():
    """The renewal-reward computation agrees with the mean surprisal of 1.6M sampled tokens under
    the language's own predictive probabilities (which follow the sampler's rules independently)."""
    language = QuickstartLanguage()
    chains = language.sample(16 * 100_000, seed=123, n_chains=16).reshape(16, -1)
    surprisal = np.concatenate([-language.log2_probs(chain) for chain in chains])
    batch_means = surprisal[: len(surprisal) // 200 * 200].reshape(200, -1).mean(1)
    estimate, stderr = batch_means.mean(), batch_means.std() / np.sqrt(len(batch_means))
    exact = language.entropy_rate_bits
    assert abs(estimate - exact) < 4 * stderr + 1e-3, (exact, estimate, stderr)
    assert abs(estimate - exact) / exact < 0.005


def test_sampling_is_a_function_of_the_seeds():
    language = QuickstartLanguage()
    a = language.sample(5000, seed=1)
    assert (a == language.sample(5000, seed=1)).all()
    assert not (a == language.sample(5000, seed=2)).all()
    assert not (a == QuickstartLanguage(seed=1).sample(5000, seed=1)).all()
    assert a.min() >= 0 and a.max() < language.vocab_size and a[0] < language.n_topics

