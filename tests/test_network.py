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


def _num_params(model):
    return sum(p.numel() for p in model.parameters())


def test_default_size_is_ports():
    """The defaults are PORT's size: 64 wide, 4 blocks, MLP x2, QKV over
    rings 0 and 1 (C = 64, hidden H = 128, K = 21 hand joints, input
    (x, y, score)). Counted by hand (weights + biases):

        input_embed  Linear(3, C)           3 * 64 + 64              =     256
        mask_token   C                                               =      64
        joint_embed  K x C                  21 * 64                  =   1,344
        per block:
          norm1      LayerNorm(C)           2 * 64                   =     128
          qkv        Linear(2 C, 3 C)       128 * 192 + 192          =  24,768
          proj       Linear(C, C)           64 * 64 + 64             =   4,160
          norm2      LayerNorm(C)           2 * 64                   =     128
          mlp        Linear(C, H), (H, C)   64 * 128 + 128
                                            + 128 * 64 + 64          =  16,576
          block                                                      =  45,760
        4 blocks                                                     = 183,040
        norm         LayerNorm(C)           2 * 64                   =     128
        head         Linear(C, 2)           64 * 2 + 2               =     130
        total        256 + 64 + 1,344 + 183,040 + 128 + 130          = 184,962

    The number of heads changes no parameter; width, depth, MLP ratio,
    rings, K and the score input all do."""
    model = PoseRelationTransformer(21, HAND_LINKS)
    assert _num_params(model) == 184_962
    # the error head adds Linear(C, 2): 130
    assert _num_params(PoseRelationTransformer(21, HAND_LINKS, predict_errors=True)) == 185_092


def test_configured_hand_network_size():
    """The hand config's network (configs/port/port_panoptic-hand2d_keypoints-only.py:
    C = 32, 4 blocks, MLP x2, rings 0 and 1, one head, with scores; H = 64,
    K = 21). Counted by hand:

        input_embed  3 * 32 + 32                                     =     128
        mask_token                                                   =      32
        joint_embed  21 * 32                                         =     672
        per block:   norm1 64 + qkv (64 * 96 + 96 = 6,240)
                     + proj (32 * 32 + 32 = 1,056) + norm2 64
                     + mlp (32 * 64 + 64 + 64 * 32 + 32 = 4,192)     =  11,616
        4 blocks                                                     =  46,464
        norm 64, head 32 * 2 + 2 = 66
        total        128 + 32 + 672 + 46,464 + 64 + 66               =  47,426

    About a quarter of PORT's size (the shipped
    checkpoints/port_panoptic_hand21.pth holds as many)."""
    from mmengine.config import Config
    network = Config.fromfile('configs/port/port_panoptic-hand2d_keypoints-only.py').model.network
    network = {k: v for k, v in network.to_dict().items() if k != 'type'}
    model = PoseRelationTransformer(21, HAND_LINKS, **network)
    assert _num_params(model) == 47_426


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
