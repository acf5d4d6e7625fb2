"""Property tests for the pure majority maths (etcd's quorum/quick_test.go)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lictor.server.raft.quorum import VoteResult, committed_index, quorum_size, vote_result

ids = st.integers(min_value=1, max_value=9)
voter_sets = st.sets(ids, min_size=1, max_size=7)


@st.composite
def matches(draw: st.DrawFn) -> tuple[set[int], dict[int, int]]:
    voters = draw(voter_sets)
    known = draw(st.sets(ids, max_size=9))  # may include non-voters, may miss voters
    match = {i: draw(st.integers(min_value=0, max_value=50)) for i in known}
    return voters, match


@given(matches())
def test_commit_index_is_matched_by_a_quorum(vm: tuple[set[int], dict[int, int]]) -> None:
    voters, match = vm
    ci = committed_index(match, voters)
    at_least = sum(1 for v in voters if match.get(v, 0) >= ci)
    assert at_least >= quorum_size(len(voters))


@given(matches())
def test_commit_index_is_the_largest_such(vm: tuple[set[int], dict[int, int]]) -> None:
    voters, match = vm
    ci = committed_index(match, voters)
    above = sum(1 for v in voters if match.get(v, 0) > ci)
    assert above < quorum_size(len(voters))


@given(matches())
def test_commit_index_never_exceeds_quorum_minimum(vm: tuple[set[int], dict[int, int]]) -> None:
    voters, match = vm
    ci = committed_index(match, voters)
    # For every quorum, ci may exceed that quorum's minimum only if another quorum supports it;
    # in particular ci <= the minimum of the top-quorum matches.
    top = sorted((match.get(v, 0) for v in voters), reverse=True)[: quorum_size(len(voters))]
    assert ci <= min(top)


@given(matches(), st.dictionaries(ids, st.integers(min_value=0, max_value=50)))
def test_non_voters_do_not_count(vm: tuple[set[int], dict[int, int]], extra: dict[int, int]) -> None:
    voters, match = vm
    merged = dict(match)
    merged.update({k: v for k, v in extra.items() if k not in voters})
    assert committed_index(merged, voters) == committed_index(match, voters)


@given(matches(), ids, st.integers(min_value=0, max_value=20))
def test_commit_index_is_monotone(vm: tuple[set[int], dict[int, int]], who: int, bump: int) -> None:
    voters, match = vm
    before = committed_index(match, voters)
    bumped = dict(match)
    bumped[who] = bumped.get(who, 0) + bump
    assert committed_index(bumped, voters) >= before


def test_commit_index_examples() -> None:
    assert committed_index({1: 5, 2: 3, 3: 1}, {1, 2, 3}) == 3
    assert committed_index({1: 5, 2: 3, 3: 1, 4: 9}, {1, 2, 3, 4}) == 3
    assert committed_index({1: 7}, {1}) == 7
    assert committed_index({}, set()) == 0
    assert committed_index({1: 9, 9: 9}, {1, 2, 3}) == 0


@st.composite
def tallies(draw: st.DrawFn) -> tuple[set[int], dict[int, bool]]:
    voters = draw(voter_sets)
    votes = draw(st.dictionaries(ids, st.booleans()))
    return voters, votes


@given(tallies())
def test_vote_result_matches_counting(vt: tuple[set[int], dict[int, bool]]) -> None:
    voters, votes = vt
    q = quorum_size(len(voters))
    granted = sum(1 for v in voters if votes.get(v) is True)
    missing = sum(1 for v in voters if v not in votes)
    res = vote_result(votes, voters)
    if granted >= q:
        assert res is VoteResult.WON
    elif granted + missing >= q:
        assert res is VoteResult.PENDING
    else:
        assert res is VoteResult.LOST


@given(tallies(), ids, st.booleans())
def test_decided_vote_never_changes(vt: tuple[set[int], dict[int, bool]], who: int, g: bool) -> None:
    voters, votes = vt
    res = vote_result(votes, voters)
    if who in votes or res is VoteResult.PENDING:
        return
    more = dict(votes)
    more[who] = g
    assert vote_result(more, voters) is res


def test_vote_result_examples() -> None:
    assert vote_result({1: True}, {1}) is VoteResult.WON
    assert vote_result({1: True}, {1, 2, 3}) is VoteResult.PENDING
    assert vote_result({1: True, 2: False, 3: False}, {1, 2, 3}) is VoteResult.LOST
    assert vote_result({1: True, 4: True}, {1, 2, 3}) is VoteResult.PENDING  # 4 is no voter
