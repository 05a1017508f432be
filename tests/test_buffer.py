"""RolloutBuffer: in-place inserts, plain shuffling and the symbol-major group layout."""
import pytest
import torch

from ppo_core import RolloutBuffer

T, S, E, A = 6, 3, 4, 5
N = S * E


def filled_buffer(num_actions=A):
    buf = RolloutBuffer(T, N, {"x": (2,), "w": (3, 2)}, "cpu", num_actions)
    for t in range(T):
        ids = torch.arange(N, dtype=torch.float32) + 1000 * t  # sample id = t * 1000 + n
        obs = {"x": ids[:, None].expand(N, 2), "w": ids[:, None, None].expand(N, 3, 2)}
        masks = (torch.arange(A)[None, :] <= (ids[:, None] % A)) if num_actions else None
        buf.insert(t, obs, ids.long(), ids, ids, ids, torch.zeros(N), masks)
    ids = buf.values.clone()
    return buf, ids, ids + 0.5


def sample_ids(mb):
    return mb.values.long()


def test_insert_copies_in_place_without_new_storage():
    buf = RolloutBuffer(T, N, {"x": (2,)}, "cpu", A)
    tensors = [buf.obs["x"], buf.actions, buf.logprobs, buf.values, buf.rewards, buf.dones, buf.masks]
    pointers = [t.data_ptr() for t in tensors]
    obs = {"x": torch.randn(N, 2)}
    masks = torch.rand(N, A) > 0.5
    buf.insert(2, obs, torch.ones(N, dtype=torch.long), torch.full((N,), -0.5), torch.full((N,), 3.0),
               torch.full((N,), 1.5), torch.ones(N, dtype=torch.bool), masks)
    assert [t.data_ptr() for t in tensors] == pointers
    torch.testing.assert_close(buf.obs["x"][2], obs["x"])
    assert torch.equal(buf.masks[2], masks) and buf.dones[2].eq(1.0).all() and buf.rewards[1].eq(0).all()
    obs["x"].add_(1.0)  # the buffer holds a copy, not a view
    assert not torch.equal(buf.obs["x"][2], obs["x"])


def test_plain_shuffle_covers_every_sample_once_and_rows_stay_aligned():
    buf, adv, ret = filled_buffer()
    gen = torch.Generator().manual_seed(0)
    batches = list(buf.minibatches(adv, ret, 4, generator=gen))
    assert len(batches) == 4 and all(len(mb.actions) == T * N // 4 for mb in batches)
    ids = torch.cat([sample_ids(mb) for mb in batches])
    assert sorted(ids.tolist()) == sorted(buf.values.flatten().long().tolist())
    for mb in batches:
        fid = mb.values
        for tensor in (mb.obs["x"][:, 0], mb.obs["w"][:, 2, 1], mb.actions.float(), mb.logprobs,
                       mb.advantages, mb.returns - 0.5):
            torch.testing.assert_close(tensor, fid)
        assert torch.equal(mb.masks, torch.arange(A)[None, :] <= (fid.long()[:, None] % A))


def test_group_layout_equal_shares_group_major_and_full_coverage():
    buf, adv, ret = filled_buffer()
    M = 4
    batches = list(buf.minibatches(adv, ret, M, num_groups=S, generator=torch.Generator().manual_seed(3)))
    b = T * E // M
    seen = []
    for mb in batches:
        ids = sample_ids(mb)
        groups = (ids % 1000) // E  # account n -> group n // E
        expected = torch.arange(S).repeat_interleave(b)  # b rows of group 0, then group 1, ...
        assert torch.equal(groups, expected)
        seen += ids.tolist()
    assert sorted(seen) == sorted(buf.values.flatten().long().tolist())
    assert len(set(seen)) == T * N


def test_shuffle_differs_between_calls_but_is_reproducible():
    buf, adv, ret = filled_buffer()
    order = lambda gen: torch.cat([sample_ids(mb) for mb in buf.minibatches(adv, ret, 2, 3, gen)])
    a = order(torch.Generator().manual_seed(7))
    assert torch.equal(a, order(torch.Generator().manual_seed(7)))
    assert not torch.equal(a, order(torch.Generator().manual_seed(8)))


def test_no_masks_when_built_without_actions():
    buf, adv, ret = filled_buffer(num_actions=None)
    assert all(mb.masks is None for mb in buf.minibatches(adv, ret, 2))


@pytest.mark.parametrize("kwargs, message", [
    ({"num_minibatches": 5}, "must divide the batch"),
    ({"num_minibatches": 4, "num_groups": 5}, "num_groups"),
    ({"num_minibatches": 5, "num_groups": 3}, "each group's share"),
])
def test_divisibility_errors_name_the_problem(kwargs, message):
    buf, adv, ret = filled_buffer()
    with pytest.raises(ValueError, match=message):
        next(buf.minibatches(adv, ret, **kwargs))


def test_wrong_advantage_shape_is_rejected():
    buf, adv, _ = filled_buffer()
    with pytest.raises(ValueError, match="returns"):
        next(buf.minibatches(adv, adv.flatten(), 2))
