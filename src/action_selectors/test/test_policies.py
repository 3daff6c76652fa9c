import numpy as np
import pytest

from action_selectors.policies import (
    SEQUENCES,
    ConstantPolicy,
    RandomPolicy,
    SequencePolicy,
    UncertaintyPolicy,
    make_policy,
    parse_sequence,
)
from action_selectors.stats import RunnerStats


def take(policy, n, scores=None):
    return [policy.choose(scores) for _ in range(n)]


def test_constant():
    assert take(ConstantPolicy(1, 2), 5) == [1] * 5
    with pytest.raises(ValueError):
        ConstantPolicy(2, 2)


@pytest.mark.parametrize(
    'name, expected',
    [
        ('ALWAYS_MOVE', [1, 1, 1, 1, 1, 1]),
        ('ALWAYS_STAY', [0] * 6),
        ('ALTERNATE', [0, 1, 0, 1, 0, 1]),
        ('DOUBLE_MOVE', [1, 1, 0, 1, 1, 0]),
        ('TRIPLE_MOVE', [1, 1, 1, 0, 1, 1]),
    ],
)
def test_predefined_sequences_cycle(name, expected):
    assert take(SequencePolicy(SEQUENCES[name], 2), 6) == expected


def test_parse_sequence():
    assert parse_sequence('alternate') == (0, 1)
    assert parse_sequence('SEQUENCE_TRIPLE_MOVE') == (1, 1, 1, 0)
    assert parse_sequence('1,1,0') == (1, 1, 0)
    with pytest.raises(ValueError, match='neither'):
        parse_sequence('ZIGZAG')
    with pytest.raises(ValueError):
        make_policy('sequence', 2, sequence='0,5')


def test_random_is_seeded_and_covers_actions():
    a = take(RandomPolicy(3, seed=11), 300)
    assert a == take(RandomPolicy(3, seed=11), 300)
    assert a != take(RandomPolicy(3, seed=12), 300)
    assert all(70 < a.count(i) < 130 for i in range(3))


def test_uncertainty_picks_max_and_breaks_ties_at_random():
    p = UncertaintyPolicy(2, seed=0)
    assert take(p, 10, {'0': 0.1, '1': 0.9}) == [1] * 10
    assert take(p, 10, {'L0:0': 0.9, 'L0:1': 0.1, 'bogus': 5.0, 'L0:7': 9.0}) == [0] * 10
    ties = take(p, 200, {'L0:0': 0.5, 'L0:1': 0.5})
    assert 60 < ties.count(0) < 140
    with pytest.raises(ValueError):
        p.choose(None)
    with pytest.raises(ValueError):
        p.choose({'7': 1.0})


def test_uncertainty_executes_a_winning_macro_action_in_order():
    p = UncertaintyPolicy(2, seed=0)
    scores = {'L0:0': 0.1, 'L0:1': 0.2, 'L1:1-0': 0.3, 'L1:0-0': 0.05}
    assert take(p, 4, scores) == [1, 0, 1, 0]  # the macro twice, primitive by primitive
    assert take(p, 1, {'L0:0': 0.9, 'L0:1': 0.2}) == [0]


def test_uncertainty_chooses_at_random_with_the_given_probability():
    scores = {'L0:0': 0.1, 'L0:1': 0.9, 'L0:2': 0.2}
    p = make_policy('uncertainty', 3, seed=1, random_choice_probability=0.3)
    counts = np.bincount(take(p, 3000, scores), minlength=3)
    # argmax 70% + a third of the random 30% for the best; 10% for each of the others
    assert counts[1] / 3000 == pytest.approx(0.8, abs=0.03)
    assert counts[0] / 3000 == pytest.approx(0.1, abs=0.02)
    assert counts[2] / 3000 == pytest.approx(0.1, abs=0.02)
    # a random macro-action is executed whole, like a winning one: here every 1 comes from
    # the macro, so the 1s come in pairs
    p = UncertaintyPolicy(2, seed=2, random_choice_probability=1.0)
    runs = ''.join(map(str, take(p, 400, {'L0:0': 0.9, 'L1:1-1': 0.1}))).split('0')
    assert all(len(run) % 2 == 0 for run in runs[:-1]) and any(runs)


def test_uncertainty_drops_the_rest_of_a_macro_action_when_told():
    p = UncertaintyPolicy(2, seed=0)
    assert p.choose({'L0:0': 0.1, 'L1:1-1': 0.9}) == 1
    p.drop_plan()
    assert p.choose({'L0:0': 0.9, 'L1:1-1': 0.1}) == 0


def test_uncertainty_without_random_choices_is_the_seeded_argmax():
    scores = {'L0:0': 0.5, 'L0:1': 0.5}
    plain = take(UncertaintyPolicy(2, seed=4), 100, scores)
    assert take(UncertaintyPolicy(2, seed=4, random_choice_probability=0.0), 100, scores) == plain
    with pytest.raises(ValueError, match=r'random_choice_probability must be in \[0, 1\]'):
        UncertaintyPolicy(2, random_choice_probability=1.5)


def test_unknown_policy_name():
    with pytest.raises(ValueError, match='unknown policy'):
        make_policy('greedy', 2)


def test_runner_stats():
    stats = RunnerStats(2)
    for i, (a, t) in enumerate([(1, 0.0), (1, 0.1), (0, 0.3), (1, 0.6)]):
        stats.record(a, t)
    s = stats.summary()
    assert s['steps'] == 4 and s['counts'] == {0: 1, 1: 3} and s['percent'] == {0: 25.0, 1: 75.0}
    iv = s['interval_s']
    assert iv['min'] == pytest.approx(0.1) and iv['max'] == pytest.approx(0.3)
    assert iv['mean'] == pytest.approx(0.2) and iv['median'] == pytest.approx(0.2)
    assert s['steps_per_s'] == pytest.approx(3 / 0.6)
    text = stats.format({0: 'stay', 1: 'move'})
    assert 'steps: 4' in text and '75.0' in text and 'move' in text
