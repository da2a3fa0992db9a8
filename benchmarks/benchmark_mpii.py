"""The MPII benchmark of the score-free refiner on real predictions of three
published models that give no per-joint confidence (Tompson et al., stacked
hourglass with 1 and with 8 stacks), on the bundled ``data/mpii``.

The refiner reads positions only (every joint doubtful, no scores) and is
trained keypoints-only (``benchmarks/score_free_training.py``) on the MPII
training persons' ground truth with real error vectors transplanted onto it,
synthetic errors, far outliers (``OUTLIER_PROB``), and real predictions.

* Cross-validated run: 5 folds over the 2958 validation persons, grouped by
  image. For each fold one refiner is trained on the training ground truth,
  with the error vectors and the real predictions of the other four folds'
  persons (all three models), and refines each model's predictions of the
  held-out fold. With ``--model-offsets`` (a trial, off by default: see
  docs/design_trials.md) each model's common offset on the training folds
  is removed from its predictions before the refiner reads them (training,
  margin choice, refinement), where removing the inner training persons'
  offset lowers the inner validation fold's PCKh costs: the refiner of a
  known method then need not guess from the pose whose offset to apply.
* Held-out-model run: for each model, a refiner trained on the training
  ground truth with transplanted error vectors of the other two models only
  (no validation position enters training) refines that model's
  predictions of all validation persons. Each training model's error
  vectors are centred on its common offset
  (:func:`benchmarks.score_free_training.common_offset`): an unseen model's
  offset is not theirs, and the pose alone does not show it. Each of the
  three refiners also refines the bundled BlazePose predictions on LSP,
  LSP-Extended and COCO photos, a method of another kind
  (:mod:`benchmarks.blazepose_as_mpii`; scored on the twelve limb joints).

The do-no-harm gate's margins, one per joint class, are chosen on training
data only (:func:`mmport.models.do_no_harm.choose_gate_margins`, best
PCKh@0.5 of the joint class, then its error): a refiner trained on part of
a run's training data refines the rest, and the margins it chooses are
applied by the refiner trained on all of it. In the cross-validated run
the inner validation is the next fold (one of the four training folds),
margins chosen per model. The held-out-model run chooses them as it is
scored, leaving one training model out: with training models A and B, an
inner refiner trained on A's error vectors of four fifths of the persons
(grouped by image) is validated on B's predictions of the other fifth, one
trained on B's on A's, and a finite margin must help in both (the worse of
the two decides); the held-out model's predictions enter no choice, and a
finite margin must also beat leaving the joint class where it is by
``--held-out-margin-z`` standard errors (default 2, images as clusters;
``--margin-z`` for the cross-validated run, default 0). In both runs a joint
that lies outside its instance's box moves wherever the network expects a
gain of more than ``--outside-box-margin`` (default ``OUTSIDE_BOX_MARGIN``;
the rule's ``gate.outside_box``), whatever its class's margin, so the
class margins are chosen on the joints inside the boxes.

The refiners of a run are independent of each other and train side by side
(``--workers`` processes, default one per core; each seeds itself, so the
numbers do not depend on it). Every refiner, inner or final, runs with flip
test (``FLIP_TEST``; ``--no-flip-test`` turns it off): the margins are
chosen on the reconstructions and estimates that the refinement then uses.

Instances are framed by the box each method ran on, MPII's protocol box
(the results files' ``bbox``: MMPose's MpiiDataset box from the protocol's
centre and scale, the rough person location MPII gives every method), or
with ``--frame pred`` by boxes made from each model's predictions alone.
Ground truth reaches only the training data and the scorer. The MPII
training persons, ground truth only, are framed as the protocol would
frame them (:func:`protocol_like_boxes`).
Writes ``<work-dir>/mpii.json`` and prints a table.

    python -m benchmarks.benchmark_mpii [--work-dir DIR] [--seed 0] [--frame results|pred]
        [--margin-z 0] [--held-out-margin-z 2] [--outside-box-margin 0|none]
        [--outlier-prob 0.05] [--flip-prob 0.5]
        [--[no-]flip-test] [--workers N] [--model-offsets] [--skip-cross-validated]
        [--skip-held-out-model]
"""
import argparse
import dataclasses
import json
import os
import os.path as osp
import sys
from typing import Optional

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from benchmarks.blazepose_as_mpii import blazepose_mpii_poses  # noqa: E402
from benchmarks.parallel_training import (ProgressLog, TrainingJob,  # noqa: E402
                                          default_workers, train_refiners)
from benchmarks.score_free_training import (PoseSource, SamplerConfig,  # noqa: E402
                                            add_training_arguments, build_refiner,
                                            common_offset, to_box_frame)
import mmport  # noqa: E402,F401  (registers mmport's modules)
from mmport.datasets.grouped_folds import grouped_folds  # noqa: E402
from mmport.evaluation import mpii_pose_errors  # noqa: E402
from mmport.evaluation.functional import move_outcomes  # noqa: E402
from mmport.fitting import choose_gate_margins  # noqa: E402
from mmport.models.do_no_harm import joints_outside_boxes  # noqa: E402
from mmport.utils import positive_int  # noqa: E402

MODELS = ('tompson', 'hg_s1', 'hg_s8')
MODEL_NAMES = {'tompson': 'Tompson et al.', 'hg_s1': 'hourglass 1 stack',
               'hg_s8': 'hourglass 8 stacks'}
METAINFO = dict(from_file='configs/_base_/datasets/mpii.py')
# far outliers in the training inputs (SamplerConfig.outlier_prob): a results
# file's placeholder for a joint the method gave none, a joint off the body
OUTLIER_PROB = 0.05
# the gate margin of the joints outside their instance's box
# (the rule's gate.outside_box): off the body, they move wherever the
# network expects a gain; the inner validations hold too few of them to
# choose a margin per joint class (docs/benchmarks.md)
OUTSIDE_BOX_MARGIN = 0.0
# flip test (the rule's flip_test): each pose and its mirror image, averaged,
# in the margin choice and in the refinement; training flips at random, so
# the network should read both the same, and where it does not (one side's
# joint moving where its mirror would not) the average is less sure of itself
FLIP_TEST = True


def refiner_config(embed_dim: int = 64, num_heads: int = 2,
                   quality_kind: str = 'keypoint_similarity', flip_test: bool = False,
                   outside_box_margin: Optional[float] = None) -> dict:
    """The score-free refiner: positions only, every joint a hinted
    candidate (hint mode keeps each doubtful position visible). The gate
    compares estimated keypoint similarities by default (``quality_kind``;
    PCKh, like OKS, rewards only joints brought within a tolerance).
    ``flip_test`` averages the reconstructions and error estimates of each
    pose and its mirror image (the rule's ``flip_test``);
    ``outside_box_margin`` is the gate margin of the joints outside their
    box (the rule's ``gate.outside_box``, None: their class's)."""
    return dict(
        type='PORTRefiner',
        metainfo=METAINFO,
        quality_kind=quality_kind,
        network=dict(type='PoseRelationTransformer', embed_dim=embed_dim, depth=4,
                     num_heads=num_heads, mlp_ratio=2.0, proj_hops=1, use_scores=False,
                     mask_mode='hint', predict_errors=True),
        train_cfg=dict(loss_type='euclidean'),
        # score-free: every joint is a candidate; the do-no-harm gate moves
        # those whose estimated quality the reconstruction raises
        test_cfg=dict(rule=dict(candidates='all', score_thr=None, flip_test=flip_test,
                                gate=dict(margin=0.0, outside_box=outside_box_margin))))


def with_margins(model, margins) -> None:
    """Set the gate margins of ``model``'s rule (one per joint class,
    ``inf`` keeping that class where it is)."""
    gate = dataclasses.replace(model.rule.gate, margin=tuple(margins))
    model.rule = dataclasses.replace(model.rule, gate=gate)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default='data/mpii/mpii_val_preds.npz')
    parser.add_argument('--work-dir', default='work_dirs/benchmark')
    parser.add_argument('--num-folds', type=int, default=5)
    add_training_arguments(parser, iters=1200)
    parser.add_argument('--frame', default='results', choices=('results', 'pred'),
                        help="instance frames: the results' boxes (MPII's protocol box), or "
                        "boxes made from each model's predictions alone")
    parser.add_argument('--margin-z', type=float, default=0.0,
                        help='cross-validated run: standard errors by which a joint class\'s '
                        'gain on the inner validation must exceed 0 for it to move (images '
                        'as clusters)')
    parser.add_argument('--held-out-margin-z', type=float, default=2.0,
                        help='the same for the held-out-model run, whose validations are '
                        'other models than the one it refines')
    parser.add_argument('--outside-box-margin', type=margin_or_none,
                        default=OUTSIDE_BOX_MARGIN,
                        help="gate margin of the joints outside their instance's box, "
                        "whatever their class's ('none': their class's)")
    parser.add_argument('--outlier-prob', type=float, default=OUTLIER_PROB,
                        help='per-joint probability of a far outlier in the training inputs '
                        '(SamplerConfig.outlier_prob)')
    parser.add_argument('--flip-test', action=argparse.BooleanOptionalAction,
                        default=FLIP_TEST, help="the refiners' rule's flip_test (the "
                        'margin choice and the refinement)')
    parser.add_argument('--workers', type=positive_int, default=default_workers(),
                        help='refiners trained side by side, one process each (default: '
                        'the cores this process may use; the results do not depend on it)')
    parser.add_argument('--model-offsets', action='store_true',
                        help="cross-validated run: each model's common offset, estimated on "
                        "the training folds' predictions, is removed from its predictions "
                        'before the refiner reads them (training, margin choice, '
                        'refinement), where that helps on the inner validation fold')
    parser.add_argument('--skip-cross-validated', action='store_true')
    parser.add_argument('--skip-held-out-model', action='store_true')
    return parser.parse_args(argv)


def margin_or_none(text: str) -> Optional[float]:
    """A gate margin (a number >= 0) or ``'none'``, for argparse."""
    if text.lower() == 'none':
        return None
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f'a margin must be 0 or more, got {text}')
    return value


def prediction_boxes(pred: np.ndarray, predicted: np.ndarray, margin: float = 0.15,
                     outlier: float = 3.0) -> np.ndarray:
    """Boxes (N, 4) xyxy from the predictions alone: the extent of each
    instance's predicted joints (``predicted`` (N, K) bool) enlarged by
    ``margin`` per side, leaving out joints farther from the joints' median
    than ``outlier`` times their median distance to it (e.g. Tompson et
    al.'s pelvis and thorax, which lie far off the body)."""
    pts = np.where(predicted[..., None], pred, np.nan)
    centre = np.nanmedian(pts, 1, keepdims=True)
    dist = np.linalg.norm(pts - centre, axis=-1)
    near = dist <= outlier * np.nanmedian(dist, 1, keepdims=True)
    pts = np.where(near[..., None], pts, np.nan)
    lo, hi = np.nanmin(pts, 1), np.nanmax(pts, 1)
    pad = (hi - lo) * margin
    return np.concatenate([lo - pad, hi + pad], 1)


def protocol_like_boxes(extent: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Boxes (N, 4) xyxy as MPII's protocol frames a person, for training
    persons whose protocol centre is not given: squares of side ``scale``
    (N,) * 200 about the centres of their joints' extent boxes (N, 4)."""
    centre = (extent[:, :2] + extent[:, 2:]) / 2
    half = 100 * scale[:, None]
    return np.concatenate([centre - half, centre + half], 1)


def remove_offset(points: np.ndarray, bboxes: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Pixels (N, K, 2) minus an ``offset`` (2,) given in box sizes (each
    instance's box (N, 4) xyxy, its longer side; the units of
    :func:`benchmarks.score_free_training.to_box_frame`)."""
    size = (bboxes[:, 2:] - bboxes[:, :2]).max(1)
    return points - offset * size[:, None, None]


class MPIIData:
    """The bundled arrays, with box-frame copies.

    Args:
        path (str): The npz.
        frame (str): ``'results'``: every instance in the box its method ran
            on (MPII's protocol box); ``'pred'``: each model's predictions in
            a box made from them alone (:func:`prediction_boxes`).
    """

    def __init__(self, path: str, frame: str = 'results'):
        d = np.load(path)
        self.gt, self.vis = d['val_gt'].astype(np.float64), d['val_visibility']
        self.head = d['val_head_size']
        self.image_id = d['val_image_id']
        self.pred = {m: d[f'pred_{m}'].astype(np.float64) for m in MODELS}
        self.labelled = self.vis > 0
        protocol_box = d['val_bbox'].astype(np.float64)
        self.bbox = {m: protocol_box if frame == 'results' else
                     prediction_boxes(self.pred[m], d[f'predicted_{m}'] > 0) for m in MODELS}
        self.gt_f = {m: to_box_frame(self.gt, self.bbox[m]) for m in MODELS}
        self.pred_f = {m: to_box_frame(p, self.bbox[m]) for m, p in self.pred.items()}
        tb = protocol_like_boxes(d['train_bbox'].astype(np.float64),
                                 d['train_scale'].astype(np.float64))
        self.train = PoseSource(to_box_frame(d['train_gt'].astype(np.float64), tb),
                                d['train_labelled'])

    def real(self, idx: np.ndarray, models, offsets: Optional[dict] = None) -> PoseSource:
        """Real predictions of persons ``idx`` by ``models``, stacked; with
        ``offsets`` (model -> (2,) box sizes) each model's offset removed."""
        offsets = offsets or {}
        return PoseSource(np.concatenate([self.gt_f[m][idx] for m in models]),
                          np.concatenate([self.labelled[idx]] * len(models)),
                          np.concatenate([self.pred_f[m][idx] - offsets.get(m, 0.0)
                                          for m in models]))

    def model_offset(self, idx: np.ndarray, model: str) -> np.ndarray:
        """``model``'s common offset (2,) in box sizes, on persons ``idx``
        (:func:`benchmarks.score_free_training.common_offset`)."""
        return common_offset(self.real(idx, [model]).error_vectors())

    def predictions(self, model: str, offset: Optional[np.ndarray] = None) -> np.ndarray:
        """``model``'s predictions (N, K, 2) pixels, with ``offset`` (2,) box
        sizes removed (:func:`remove_offset`)."""
        if offset is None:
            return self.pred[model]
        return remove_offset(self.pred[model], self.bbox[model], offset)


# name -> gate margin: None for the model's own rule (the chosen margins),
# False for no gate
GATES = {'refined': None, 'refined_margin_0': 0.0, 'refined_without_gate': False}


def refine(model, keypoints: np.ndarray, bboxes: np.ndarray) -> dict:
    """Score-free refinement of (N, K, 2) pixel keypoints with the model's
    gate margins, with margin 0 and without the do-no-harm gate: name in
    ``GATES`` -> refined (N, K, 2)."""
    kpts = torch.as_tensor(keypoints, dtype=torch.float32)
    own = model.rule
    out = {}
    for name, margin in GATES.items():
        if margin is False:
            model.rule = dataclasses.replace(own, gate=None)
        elif margin is not None:
            model.rule = dataclasses.replace(own, gate=dataclasses.replace(own.gate,
                                                                           margin=margin))
        refined, _ = model.refine(kpts, torch.zeros(kpts.shape[:2]),
                                  torch.as_tensor(bboxes, dtype=torch.float32))
        out[name] = refined.double().numpy()
        model.rule = own
    return out


@torch.no_grad()
def reconstructions(model, keypoints: np.ndarray, bboxes: np.ndarray,
                    chunk: int = 256) -> tuple:
    """Score-free reconstructions of every joint (N, K, 2) pixels and the
    gate's expected gain (N, K) (reconstruction's quality minus the
    input's), as :meth:`PORTRefiner.refine` computes them (boxes valid)."""
    kpts = torch.as_tensor(keypoints, dtype=torch.float32)
    boxes = torch.as_tensor(bboxes, dtype=torch.float32)
    recs, gains = [], []
    for i in range(0, len(kpts), chunk):
        k = kpts[i:i + chunk]
        rec, quality = model.reconstruct_with_errors(
            k, torch.zeros(k.shape[:2]), boxes[i:i + chunk],
            torch.ones(k.shape[:2], dtype=torch.bool))
        recs.append(rec)
        gains.append(quality[..., 1] - quality[..., 0])
    return torch.cat(recs).double().numpy(), torch.cat(gains).double().numpy()


def pckh_costs(pred: np.ndarray, gt: np.ndarray, tolerance: np.ndarray) -> np.ndarray:
    """Per-joint costs (N, K, 2) for :func:`choose_gate_margins`: 1 outside
    the PCKh tolerance (N,) (half a head size), then the error in
    tolerances."""
    err = np.linalg.norm(pred - gt, axis=-1) / tolerance[:, None]
    return np.stack([(err > 1).astype(np.float64), err], -1)


def margin_inputs(model, keypoints: np.ndarray, bboxes: np.ndarray, gt: np.ndarray,
                  labelled: np.ndarray, tolerance: np.ndarray) -> tuple:
    """The arguments of :func:`choose_gate_margins` (expected gain (N, K),
    input and reconstruction costs (N, K, 2), the joints to count (N, K))
    from validation predictions (N, K, 2) in their boxes (N, 4) with their
    ground truth and PCKh tolerances (N,). The joints to count are the
    labelled ones, without those outside their box where the model's
    rule's ``gate.outside_box`` decides them whatever their class's
    margin."""
    rec, gain = reconstructions(model, keypoints, bboxes)
    counted = torch.from_numpy(labelled)
    if model.rule.gate is not None and model.rule.gate.outside_box is not None:
        counted &= ~joints_outside_boxes(torch.from_numpy(keypoints), torch.from_numpy(bboxes))
    return (torch.from_numpy(gain), torch.from_numpy(pckh_costs(keypoints, gt, tolerance)),
            torch.from_numpy(pckh_costs(rec, gt, tolerance)), counted)


def mpii_margin_inputs(model, data: 'MPIIData', idx: np.ndarray, models,
                       offsets: Optional[dict] = None) -> tuple:
    """:func:`margin_inputs` of persons ``idx`` predicted by ``models``
    (pooled), each model's ``offsets`` (model -> (2,) box sizes) removed."""
    cat = np.concatenate
    offsets = offsets or {}
    return margin_inputs(model, cat([data.predictions(m, offsets.get(m))[idx] for m in models]),
                         cat([data.bbox[m][idx] for m in models]),
                         cat([data.gt[idx]] * len(models)),
                         cat([data.labelled[idx]] * len(models)),
                         cat([0.5 * data.head[idx]] * len(models)))


def lowers_pckh_costs(pred: np.ndarray, shifted: np.ndarray, gt: np.ndarray,
                      labelled: np.ndarray, tolerance: np.ndarray) -> bool:
    """Whether ``shifted`` (N, K, 2) beats ``pred`` (N, K, 2) on their
    :func:`pckh_costs` summed over the ``labelled`` (N, K) joints: fewer
    joints outside the tolerance (N,), then a smaller summed error; a tie
    keeps ``pred``."""
    before = pckh_costs(pred, gt, tolerance)[labelled].sum(0)
    after = pckh_costs(shifted, gt, tolerance)[labelled].sum(0)
    return tuple(after) < tuple(before)


def choose_mpii_margins(model, data: 'MPIIData', idx: np.ndarray, models, z: float = 0.0,
                        offsets: Optional[dict] = None) -> list:
    """Gate margins chosen on persons ``idx`` predicted by ``models``
    (pooled, ``offsets`` removed), with confidence bound ``z`` (images as
    clusters)."""
    return choose_gate_margins(*mpii_margin_inputs(model, data, idx, models, offsets), z=z,
                               clusters=torch.from_numpy(np.tile(data.image_id[idx],
                                                                 len(models))))


def format_margins(margins) -> str:
    """'0 .02 - ...' ('-': inf, the joint class stays where it is)."""
    return ' '.join('-' if not np.isfinite(m) else f'{m:g}'.replace('0.', '.') if m else '0'
                    for m in margins)


def margins_json(margins) -> list:
    """JSON has no inf: 'inf' for the joint classes kept where they are."""
    return [m if np.isfinite(m) else 'inf' for m in margins]


def scores(data: MPIIData, idx: np.ndarray, init: np.ndarray, refined: dict) -> dict:
    return pose_scores(init, refined, data.gt[idx], data.vis[idx], data.head[idx])


def pose_scores(init: np.ndarray, refined: dict, gt: np.ndarray, vis: np.ndarray,
                head: np.ndarray) -> dict:
    """:func:`mpii_pose_errors` of predictions ``init`` (N, K, 2) and of
    each of their ``refined`` versions (name -> (N, K, 2)), these with the
    moves' outcomes, given the ground truth (N, K, 2), MPII visibility
    (N, K) and head sizes (N,)."""
    out = {'baseline': mpii_pose_errors(init, gt, vis, head)}
    for name, pred in refined.items():
        out[name] = mpii_pose_errors(pred, gt, vis, head)
        # score-free: every joint is a candidate
        out[name].update(move_outcomes(init, pred, gt, vis, np.ones(vis.shape, bool)))
    return out


def training_job(label: str, data: MPIIData, args, real, donors, seed: int) -> TrainingJob:
    """A refiner trained on the training ground truth with real predictions
    ``real`` and/or transplanted error vectors ``donors``. Its initial
    weights come from ``seed``: a run that skips a part reproduces the
    other's numbers, whatever the number of workers."""
    return TrainingJob(label, refiner_config(args.embed_dim, args.num_heads, args.quality_kind,
                                             args.flip_test, args.outside_box_margin),
                       data.train, real, donors, seed, args.iters, args.batch_size,
                       SamplerConfig(real_prob=0.3 if real is not None else 0.0,
                                     outlier_prob=args.outlier_prob, flip_prob=args.flip_prob))


def cross_validated_run(data: MPIIData, args, log: ProgressLog) -> dict:
    if args.num_folds < 3:
        raise ValueError('the cross-validated run needs 3 folds or more (one to score, '
                         'one for the inner validation)')
    folds = grouped_folds([str(i) for i in data.image_id], args.num_folds, args.seed)
    refined = {m: {g: data.pred[m].copy() for g in GATES} for m in MODELS}
    offset_only = {m: data.pred[m].copy() for m in MODELS}

    jobs, fold_offsets = [], {}
    for f in range(args.num_folds):
        # inner validation: the next fold, held out of the fold's training data
        v = (f + 1) % args.num_folds
        inner_idx, train_idx = (np.flatnonzero((folds != f) & (folds != v)),
                                np.flatnonzero(folds != f))
        # --model-offsets: each model's common offset on the training
        # persons is removed from its predictions before the refiner reads
        # them, where removing the one of the inner persons helps on the
        # inner validation (do no harm, as for the gate's moves)
        inner_offsets, offsets, val = {}, {}, folds == v
        for m in MODELS if args.model_offsets else ():
            inner_offset = data.model_offset(inner_idx, m)
            if lowers_pckh_costs(data.pred[m][val], data.predictions(m, inner_offset)[val],
                                 data.gt[val], data.labelled[val], 0.5 * data.head[val]):
                inner_offsets[m], offsets[m] = inner_offset, data.model_offset(train_idx, m)
        fold_offsets[f] = inner_offsets, offsets
        if args.model_offsets:
            log(f'fold {f}: model offsets removed (box sizes; kept where removing one did '
                f'not help on fold {v}): ' + '; '.join(
                    f'{m} {np.round(offsets[m], 4).tolist() if m in offsets else "kept"}'
                    for m in MODELS))
        jobs += [training_job(f'fold {f} inner', data, args,
                              data.real(inner_idx, MODELS, inner_offsets), None,
                              args.seed * 100 + 10 + f),
                 training_job(f'fold {f}', data, args,
                              data.real(train_idx, MODELS, offsets), None,
                              args.seed * 100 + f)]
    trained = train_refiners(jobs, args.workers, log)
    seconds, margins = sum(info['seconds'] for _, info in trained), {}
    for f in range(args.num_folds):
        test_idx = np.flatnonzero(folds == f)
        v = (f + 1) % args.num_folds
        (inner, _), (model, _) = trained[2 * f:2 * f + 2]
        inner_offsets, fold_offset = fold_offsets[f]
        margins[f] = {m: choose_mpii_margins(inner, data, np.flatnonzero(folds == v), [m],
                                             args.margin_z, inner_offsets)
                      for m in MODELS}
        log(f'fold {f}: margins chosen on fold {v}: ' + '; '.join(
            f'{m} {format_margins(x)}' for m, x in margins[f].items()))
        for m in MODELS:
            with_margins(model, margins[f][m])
            inputs = data.predictions(m, fold_offset.get(m))[test_idx]
            offset_only[m][test_idx] = inputs
            out = refine(model, inputs, data.bbox[m][test_idx])
            for g, pred in out.items():
                refined[m][g][test_idx] = pred
    allidx = np.arange(len(data.gt))
    out = {m: scores(data, allidx, data.pred[m], refined[m]) for m in MODELS}
    for m in MODELS:
        out[m]['gate_margins'] = {f: margins_json(margins[f][m]) for f in margins}
        if args.model_offsets:
            out[m]['offset_only'] = scores(data, allidx, data.pred[m],
                                           {'offset_only': offset_only[m]})['offset_only']
            out[m]['model_offsets'] = {f: fold_offsets[f][1][m].round(5).tolist()
                                       if m in fold_offsets[f][1] else None
                                       for f in fold_offsets}
            log(f'{m}: the offset alone gives PCKh@0.5 '
                f'{100 * out[m]["baseline"]["PCKh@0.5"]:.2f} -> '
                f'{100 * out[m]["offset_only"]["PCKh@0.5"]:.2f}')
    out['train_seconds'] = seconds
    return out


def held_out_model_run(data: MPIIData, args, log: ProgressLog) -> dict:
    out = {}
    blazepose = blazepose_mpii_poses()
    allidx = np.arange(len(data.gt))
    # inner validation: a fifth of the persons (grouped by image), whose
    # error vectors the inner refiners do not see
    inner_folds = grouped_folds([str(i) for i in data.image_id], 5, args.seed)
    inner_idx, val_idx = np.flatnonzero(inner_folds != 0), np.flatnonzero(inner_folds == 0)
    # one inner refiner per model, trained on that model's error vectors of
    # the inner persons (each serves the two held-out runs it trains for),
    # and one final refiner per held-out model, on the other two models'
    jobs = [training_job(f'inner {a}', data, args, None,
                         data.real(inner_idx, [a]).error_vectors(centred=True),
                         args.seed * 100 + 60) for a in MODELS]
    for m in MODELS:
        donors = np.concatenate([data.real(allidx, [o]).error_vectors(centred=True)
                                 for o in MODELS if o != m])
        jobs.append(training_job(f'held-out {m}', data, args, None, donors,
                                 args.seed * 100 + 50))
    trained = train_refiners(jobs, args.workers, log)
    seconds = sum(info['seconds'] for _, info in trained)
    inner = {a: model for a, (model, _) in zip(MODELS, trained)}
    for m, (model, _) in zip(MODELS, trained[len(MODELS):]):
        others = [o for o in MODELS if o != m]
        # the margins are chosen as the held-out run is scored: leave one
        # training model out, i.e. a refiner trained on A's errors is
        # validated on B's predictions and one trained on B's on A's; each
        # pair is a domain and a finite margin must help in both (the worse
        # of the two decides, not their sum: the run must not lower any
        # model's score, and a pooled sum lets a large gain on one model
        # hide a loss on the other, which is how an unseen model goes down)
        pairs = [(a, b) for a in others for b in others if a != b]
        parts = [mpii_margin_inputs(inner[a], data, val_idx, [b]) for a, b in pairs]
        domains = torch.cat([torch.full((len(p[0]),), i) for i, p in enumerate(parts)])
        clusters = torch.from_numpy(np.tile(data.image_id[val_idx], len(pairs)))
        margins = choose_gate_margins(*(torch.cat(x) for x in zip(*parts)), domains=domains,
                                      z=args.held_out_margin_z, clusters=clusters)
        log(f'held-out {m}: margins chosen leaving one of {others} out: '
            f'{format_margins(margins)}')
        with_margins(model, margins)
        out[m] = scores(data, allidx, data.pred[m],
                        refine(model, data.pred[m], data.bbox[m]))
        out[m].update(trained_with=others, gate_margins=margins_json(margins))
        # and a method of another kind, which no choice saw
        out[m]['blazepose'] = pose_scores(blazepose.pred,
                                          refine(model, blazepose.pred, blazepose.bbox),
                                          blazepose.gt, blazepose.visibility, blazepose.head_size)
    out['train_seconds'] = seconds
    return out


GATE_LABELS = {'refined': ', chosen margins', 'refined_margin_0': ', margin 0',
               'refined_without_gate': ', no gate'}


def format_margin_lines(result: dict) -> str:
    """One line per run: the chosen margins (joints in MPII order)."""
    lines = []
    if 'cross_validated' in result:
        lines.append('gate margins, cross-validated (per fold; "-" = inf): ' + '; '.join(
            f'{m} f{f}: {format_margins([float(x) for x in ms])}' for m in MODELS
            for f, ms in result['cross_validated'][m]['gate_margins'].items()))
    if 'held_out_model' in result:
        held_out = result['held_out_model']
        lines.append('gate margins, held-out model: ' + '; '.join(
            f'{m}: {format_margins([float(x) for x in held_out[m]["gate_margins"]])}'
            for m in MODELS))
    return '\n'.join(lines)


def format_table(result: dict) -> str:
    rows = [('run', 'model', 'PCKh@0.5', 'PCKh@0.5 all', 'EPE px', 'EPE occl. px',
             'moved', 'worsened')]
    # run label -> (model column, scores) per MPII model
    groups = {run: [(MODEL_NAMES[m], result[run][m]) for m in MODELS]
              for run in ('cross_validated', 'held_out_model') if run in result}
    if 'held_out_model' in result:
        groups['held_out_model on BlazePose'] = [
            (f'refiner w/o {MODEL_NAMES[m]}', result['held_out_model'][m]['blazepose'])
            for m in MODELS]
    for run, entries in groups.items():
        for gate, (name, res) in ((g, e) for g in GATES for e in entries):
            b, r = res['baseline'], res[gate]
            rows.append((run + GATE_LABELS[gate], name,
                         f'{100 * b["PCKh@0.5"]:.2f} -> {100 * r["PCKh@0.5"]:.2f}',
                         f'{100 * b["PCKh@0.5_all"]:.2f} -> {100 * r["PCKh@0.5_all"]:.2f}',
                         f'{b["EPE"]:.2f} -> {r["EPE"]:.2f}',
                         f'{b["EPE_occluded"]:.2f} -> {r["EPE_occluded"]:.2f}',
                         f'{100 * r["replaced_fraction"]:.1f}%',
                         f'{100 * r["worsened_fraction"]:.1f}%'))
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(row, width)) for row in rows]
    lines.insert(1, '  '.join('-' * w for w in width))
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.work_dir, exist_ok=True)
    log = ProgressLog()
    data = MPIIData(args.data, args.frame)
    result = {}
    if not args.skip_cross_validated:
        result['cross_validated'] = cross_validated_run(data, args, log)
    if not args.skip_held_out_model:
        result['held_out_model'] = held_out_model_run(data, args, log)
    result.update(seed=args.seed, frames=args.frame, iters=args.iters, num_folds=args.num_folds,
                  model_offsets=args.model_offsets, margin_z=args.margin_z,
                  held_out_margin_z=args.held_out_margin_z,
                  outlier_prob=args.outlier_prob, outside_box_margin=args.outside_box_margin,
                  refiner=refiner_config(args.embed_dim, args.num_heads, args.quality_kind,
                                         args.flip_test, args.outside_box_margin),
                  seconds=log.elapsed())
    out_json = osp.join(args.work_dir, 'mpii.json')
    with open(out_json, 'w') as f:
        json.dump(result, f, indent=2)
    print('\nMPII benchmark, score-free refiner (PCKh@0.5: pelvis and thorax excluded; '
          '"all": every labelled joint; moved / worsened: share of labelled joints moved, '
          'and of those, the share whose error grew; "no gate": every joint moved to its '
          'reconstruction; margins chosen on training data only)\n' + format_table(result)
          + '\n' + format_margin_lines(result)
          + f'\nwrote {out_json} ({result["seconds"]:.0f} s)', flush=True)


if __name__ == '__main__':
    main()
