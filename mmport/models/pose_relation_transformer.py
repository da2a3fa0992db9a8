"""PORT: the Pose Relation Transformer network (plain PyTorch)."""
from typing import Optional, Sequence, Tuple, Union

import torch
from mmpose.registry import MODELS
from torch import Tensor, nn

from mmport.structures.skeleton import hop_aggregation_matrices
from .skeleton_attention import build_blocks

MASK_MODES = ('token', 'hint')


@MODELS.register_module()
class PoseRelationTransformer(nn.Module):
    """Reconstructs masked joints of one instance from its other joints.

    Each joint is a token: an embedding of its normalised (x, y) and, if
    ``use_scores``, its detector confidence, plus a learned identity
    embedding. Joints to reconstruct get a learned mask token. Blocks mix
    global context (self-attention over all joints) with local context (QKV
    projections that convolve over the skeleton graph). A linear head
    regresses every joint's coordinates; visible joints are predicted as a
    residual on their input.

    Args:
        num_keypoints (int): K.
        skeleton_links (sequence): 0-based joint links, e.g. from
            ``dataset.metainfo['skeleton_links']``.
        embed_dim (int): Token width. Defaults to 64 (PORT's size).
        depth (int): Number of blocks. Defaults to 4.
        num_heads (int): Attention heads. Defaults to 4.
        mlp_ratio (float): MLP width relative to ``embed_dim``. Defaults to 2.
        proj_hops (int | sequence): Skeleton rings aggregated by each block's
            QKV projection (0: per-joint linear, like PORT's kernel 1; 1:
            adjacent joints too, like its kernel 3). An int applies to all
            blocks. Defaults to 1.
        use_scores (bool): Feed the detector confidence of each joint.
        mask_mode (str): ``'token'`` replaces a masked joint's input by the
            mask token (PORT's masked joint modeling); ``'hint'`` adds the
            mask token to the joint's embedding, so its doubtful position
            stays visible as a hint.
        drop (float): Dropout. Defaults to 0.
        predict_errors (bool): Add a head that estimates, per joint, the
            quality of its input position and of its reconstruction (see
            :meth:`forward_with_errors`), which the refiner's do-no-harm gate
            compares.
    """

    def __init__(self,
                 num_keypoints: int,
                 skeleton_links: Sequence[Sequence[int]],
                 embed_dim: int = 64,
                 depth: int = 4,
                 num_heads: int = 4,
                 mlp_ratio: float = 2.0,
                 proj_hops: Union[int, Sequence[int]] = 1,
                 use_scores: bool = True,
                 mask_mode: str = 'token',
                 drop: float = 0.0,
                 predict_errors: bool = False):
        super().__init__()
        if mask_mode not in MASK_MODES:
            raise ValueError(f'mask_mode must be one of {MASK_MODES}, got {mask_mode!r}')
        if isinstance(proj_hops, int):
            proj_hops = [proj_hops] * depth
        self.num_keypoints = num_keypoints
        self.skeleton_links = [tuple(map(int, link)) for link in skeleton_links]
        self.use_scores = use_scores
        self.mask_mode = mask_mode
        hops = torch.from_numpy(hop_aggregation_matrices(
            num_keypoints, self.skeleton_links, max(proj_hops)))
        self.input_embed = nn.Linear(3 if use_scores else 2, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(embed_dim))
        self.joint_embed = nn.Parameter(torch.zeros(num_keypoints, embed_dim))
        self.blocks = build_blocks(embed_dim, depth, num_heads, mlp_ratio, hops,
                                   list(proj_hops), drop)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, 2)
        self.predict_errors = predict_errors
        self.error_head = nn.Linear(embed_dim, 2) if predict_errors else None
        self._init_weights()

    def _init_weights(self):
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.joint_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # start as the identity on visible joints
        nn.init.zeros_(self.head.weight)

    def _check(self, coords: Tensor, mask: Tensor, scores: Optional[Tensor]):
        if coords.ndim != 3 or coords.shape[1:] != (self.num_keypoints, 2):
            raise ValueError(f'coords must be (B, {self.num_keypoints}, 2), got '
                             f'{tuple(coords.shape)}')
        if mask.shape != coords.shape[:2]:
            raise ValueError(f'mask must be {tuple(coords.shape[:2])}, got {tuple(mask.shape)}')
        if self.use_scores and (scores is None or scores.shape != coords.shape[:2]):
            raise ValueError('this model uses scores: pass scores of shape '
                             f'{tuple(coords.shape[:2])}')

    def embed(self, coords: Tensor, mask: Tensor,
              scores: Optional[Tensor] = None) -> Tensor:
        """Joint tokens (B, K, C) before the blocks."""
        self._check(coords, mask, scores)
        feats = torch.cat([coords, scores[..., None]], -1) if self.use_scores else coords
        tokens = self.input_embed(feats)
        m = mask[..., None]
        if self.mask_mode == 'token':
            tokens = torch.where(m, self.mask_token.expand_as(tokens), tokens)
        else:
            tokens = tokens + m * self.mask_token
        return tokens + self.joint_embed

    def _decode(self, coords: Tensor, mask: Tensor, x: Tensor) -> Tensor:
        delta = self.head(x)
        hidden = mask[..., None] if self.mask_mode == 'token' else torch.zeros_like(mask[..., None])
        return torch.where(hidden, delta, coords + delta)

    def _features(self, coords: Tensor, mask: Tensor, scores: Optional[Tensor]) -> Tensor:
        x = self.embed(coords, mask, scores)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, coords: Tensor, mask: Tensor,
                scores: Optional[Tensor] = None) -> Tensor:
        """Reconstruct all joints.

        Args:
            coords (Tensor): Normalised joint coordinates, (B, K, 2). Values at
                masked joints are ignored in ``'token'`` mode.
            mask (Tensor): bool (B, K), True where a joint is to be
                reconstructed.
            scores (Tensor, optional): Confidences in [0, 1], (B, K).

        Returns:
            Tensor: Reconstructed normalised coordinates, (B, K, 2).
        """
        return self._decode(coords, mask, self._features(coords, mask, scores))

    def forward_with_errors(self, coords: Tensor, mask: Tensor,
                            scores: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Reconstruct all joints and estimate the errors (needs
        ``predict_errors``).

        Args:
            coords (Tensor): Normalised joint coordinates, (B, K, 2).
            mask (Tensor): bool (B, K), joints to reconstruct.
            scores (Tensor, optional): Confidences in [0, 1], (B, K).

        Returns:
            tuple[Tensor, Tensor]: reconstructed normalised coordinates
            (B, K, 2), and (B, K, 2) raw error estimates of each joint's
            input position ``[..., 0]`` and of its reconstruction
            ``[..., 1]`` (their meaning is the refiner's ``quality_kind``,
            see :mod:`mmport.models.do_no_harm`).
        """
        if self.error_head is None:
            raise RuntimeError('this network was built without predict_errors=True')
        x = self._features(coords, mask, scores)
        return self._decode(coords, mask, x), self.error_head(x)

    @torch.no_grad()
    def attention_maps(self, coords: Tensor, mask: Tensor,
                       scores: Optional[Tensor] = None) -> Tensor:
        """Per-block attention, (depth, B, heads, K, K)."""
        x = self.embed(coords, mask, scores)
        maps = []
        for block in self.blocks:
            maps.append(block.attention_weights(x))
            x = block(x)
        return torch.stack(maps)
