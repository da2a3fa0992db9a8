import pytest
import torch

from mmport.models import PoseRelationTransformer

HAND_LINKS = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
              (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18),
              (18, 19), (19, 20)]
COCO_LINKS = [(15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
              (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5),
              (4, 6)]


def _trained_like(model):
    # the head starts at zero (identity on visible joints): give it weights
    torch.manual_seed(0)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    return model.eval()


@pytest.mark.parametrize('k,links', [(21, HAND_LINKS), (17, COCO_LINKS), (5, [(0, 1)])])
@pytest.mark.parametrize('hops', [0, 1, [0, 2]])
def test_shapes_any_skeleton(k, links, hops):
    depth = 2
    model = PoseRelationTransformer(k, links, embed_dim=32, depth=depth, num_heads=4,
                                    proj_hops=hops)
    coords, scores = torch.rand(3, k, 2), torch.rand(3, k)
    mask = torch.zeros(3, k, dtype=torch.bool)
    mask[:, 0] = True
    assert model(coords, mask, scores).shape == (3, k, 2)
    assert model.attention_maps(coords, mask, scores).shape == (depth, 3, 4, k, k)


def test_token_mode_ignores_masked_coordinates():
    model = _trained_like(PoseRelationTransformer(21, HAND_LINKS, mask_mode='token'))
    coords, scores = torch.rand(2, 21, 2), torch.rand(2, 21)
    mask = torch.zeros(2, 21, dtype=torch.bool)
    mask[:, [4, 8, 12]] = True
    out = model(coords, mask, scores)
    moved = coords.clone()
    moved[:, [4, 8, 12]] += 10.0
    rescored = scores.clone()
    rescored[:, [4, 8, 12]] = 0.99
    torch.testing.assert_close(model(moved, mask, rescored), out)
    # an unmasked joint's coordinates do matter
    moved[:, 0] += 1.0
    assert not torch.allclose(model(moved, mask, scores), out)


def test_hint_mode_sees_masked_coordinates():
    model = _trained_like(PoseRelationTransformer(21, HAND_LINKS, mask_mode='hint'))
    coords, scores = torch.rand(2, 21, 2), torch.rand(2, 21)
    mask = torch.zeros(2, 21, dtype=torch.bool)
    mask[:, 4] = True
    moved = coords.clone()
    moved[:, 4] += 1.0
    assert not torch.allclose(model(moved, mask, scores), model(coords, mask, scores))


def test_untrained_model_is_identity_on_visible_joints():
    model = PoseRelationTransformer(21, HAND_LINKS).eval()
    coords, scores = torch.rand(2, 21, 2), torch.rand(2, 21)
    mask = torch.zeros(2, 21, dtype=torch.bool)
    torch.testing.assert_close(model(coords, mask, scores), coords)


def test_default_size_is_close_to_port():
    model = PoseRelationTransformer(21, HAND_LINKS)
    n = sum(p.numel() for p in model.parameters())
    # MobileNetV2 top-down hand model (backbone + head): 9.57 M parameters
    assert n < 0.05 * 9.57e6


def test_bad_inputs_raise_clear_errors():
    model = PoseRelationTransformer(21, HAND_LINKS)
    with pytest.raises(ValueError, match=r'coords must be \(B, 21, 2\)'):
        model(torch.rand(2, 17, 2), torch.zeros(2, 17, dtype=torch.bool), torch.rand(2, 17))
    with pytest.raises(ValueError, match='uses scores'):
        model(torch.rand(2, 21, 2), torch.zeros(2, 21, dtype=torch.bool))
    with pytest.raises(ValueError, match='mask_mode'):
        PoseRelationTransformer(21, HAND_LINKS, mask_mode='drop')
    with pytest.raises(ValueError, match='divisible'):
        PoseRelationTransformer(21, HAND_LINKS, embed_dim=30, num_heads=4)


@pytest.mark.parametrize('num_heads', [1, 4])
def test_block_matches_textbook_attention(num_heads):
    """The blocks' fast paths (1 head: q/k/v as slices; skeleton rings as
    broadcast products) compute the textbook formula: rings stacked by an
    einsum, heads split by reshape / permute."""
    from mmport.structures.skeleton import hop_aggregation_matrices
    torch.manual_seed(0)
    model = PoseRelationTransformer(21, HAND_LINKS, embed_dim=32, depth=1, num_heads=num_heads,
                                    proj_hops=2).eval()
    block = model.blocks[0]
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(5, 21, 32)
    hops = torch.from_numpy(hop_aggregation_matrices(21, HAND_LINKS, 2))
    rings = torch.einsum('hij,bjc->bihc', hops, block.norm1(x)).flatten(2)
    q, k, v = block.qkv.linear(rings).reshape(5, 21, 3, num_heads, 32 // num_heads).permute(
        2, 0, 3, 1, 4)
    attn = torch.softmax(q @ k.transpose(-2, -1) / (32 // num_heads) ** 0.5, dim=-1)
    y = x + block.proj((attn @ v).transpose(1, 2).flatten(2))
    y = y + block.mlp(block.norm2(y))
    with torch.no_grad():
        torch.testing.assert_close(block(x), y)
        torch.testing.assert_close(block.attention_weights(x), attn)
