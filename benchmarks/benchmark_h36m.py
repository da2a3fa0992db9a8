"""The Human3.6M benchmark of the score-free refiner on real Stacked
Hourglass detections (the 2D inputs of Martinez et al.'s 3D lifting), which
carry no per-joint confidence.

Human3.6M may not be redistributed, so nothing of it is in this repository:
the benchmark reads ``h36m_sh_step10.npz`` (every 10th frame: detections
``pred`` and projected ground truth ``gt`` (N, 16, 2) pixels, ``subject``)
from ``--data`` (default ``../shared/data/h36m_sh``). To build it yourself,
get Human3.6M under its licence (http://vision.imar.ro/human3.6m) and the
Stacked Hourglass detections of Martinez et al.'s 3d-pose-baseline, project
the 3D joints with the dataset's cameras, and save those arrays.

A refiner is trained keypoints-only on subjects S1, S5, S6, S7, S8 (real
detections with their ground truth, and the ground truth with transplanted
detection error vectors and synthetic errors) and refines S9 and S11.
Instances are framed by the detections' own extent, enlarged 15% per side
(no ground truth at test time). Joints 7 and 9 are defined differently by
the detector (MPII's thorax, head top) and Human3.6M (spine, head), so the
errors are reported with and without them.

The do-no-harm gate's margins, one per joint class, are chosen on training
data only (:func:`mmport.models.do_no_harm.choose_gate_margins`, lowest
mean pixel error of the joint class), leaving one subject out at a time:
a refiner trained on S1, S5, S6, S8 refines S7, one trained on S1, S5, S6,
S7 refines S8 (``--margin-subjects``), and the margins are applied by the
refiner trained on all five. What S9 and S11 test is a new subject, so a
joint class moves only where its moves lower its error on each held-out
subject (one domain each: the worse subject decides), and by more than
``--margin-z`` standard errors (default 2; a subject's frames come in
about 30 sequences of correlated frames, which are the clusters of the
standard error), so that a gain within the noise of one subject does not
make the class move on others. The three refiners train side by side
(``--workers``); each seeds its own initial weights and training draw.

Training does not mirror the poses (``--flip-prob``, default 0; the MPII
benchmark mirrors half of them): Human3.6M's cameras are fixed and the
detector's errors are not mirror-symmetric (in most subjects it places the
right hip further below Human3.6M's than the left), while a refiner
trained on mirrored poses must move both sides alike. Without mirroring,
the inner refiners' errors on their left-out subjects are lower
(docs/design_trials.md); the run prints them (``validation``) next to the
detections' own.
Writes ``<work-dir>/h36m.json``.

    python -m benchmarks.benchmark_h36m [--data DIR] [--work-dir DIR] [--seed 0]
        [--margin-subjects S7 S8] [--margin-z 2] [--flip-prob 0] [--[no-]flip-test]
        [--workers N]
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from benchmarks.benchmark_mpii import (GATES, format_margins, margins_json,  # noqa: E402
                                       reconstructions, refine, refiner_config, with_margins)
from benchmarks.parallel_training import (ProgressLog, TrainingJob,  # noqa: E402
                                          default_workers, train_refiners)
from benchmarks.score_free_training import (PoseSource, SamplerConfig,  # noqa: E402
                                            add_training_arguments, to_box_frame)
from mmport.fitting import choose_gate_margins  # noqa: E402
from mmport.utils import positive_int  # noqa: E402

TRAIN_SUBJECTS = ('S1', 'S5', 'S6', 'S7', 'S8')
# each held out of the training subjects in turn to choose the gate margins
MARGIN_SUBJECTS = ('S7', 'S8')
TEST_SUBJECTS = ('S9', 'S11')
OFFSET_JOINTS = (7, 9)  # defined differently by the detector and the dataset
# share of training poses mirrored (SamplerConfig.flip_prob): none, see the
# module docstring
FLIP_PROB = 0.0
PCK_PIXELS = (10, 20)


def extent_boxes(points: np.ndarray, margin: float = 0.15) -> np.ndarray:
    """Boxes (N, 4) xyxy: the extent of (N, K, 2) points enlarged by
    ``margin`` of its width / height on each side."""
    lo, hi = points.min(1), points.max(1)
    pad = (hi - lo) * margin
    return np.concatenate([lo - pad, hi + pad], 1)


def joint_report(pred: np.ndarray, gt: np.ndarray) -> dict:
    """Mean 2D error per joint, overall, without joints 7 and 9, and PCK at
    a few pixel thresholds (all joints and without 7 and 9)."""
    err = np.linalg.norm(pred - gt, axis=-1)
    keep = [j for j in range(err.shape[1]) if j not in OFFSET_JOINTS]
    out = {'error_px': float(err.mean()), 'error_px_without_7_9': float(err[:, keep].mean()),
           'per_joint_px': err.mean(0).round(4).tolist()}
    for t in PCK_PIXELS:
        out[f'PCK@{t}px'] = float((err <= t).mean())
        out[f'PCK@{t}px_without_7_9'] = float((err[:, keep] <= t).mean())
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default='../shared/data/h36m_sh')
    parser.add_argument('--work-dir', default='work_dirs/benchmark')
    add_training_arguments(parser, iters=3000, flip_prob=FLIP_PROB)
    parser.add_argument('--margin-subjects', nargs='+', default=list(MARGIN_SUBJECTS),
                        choices=TRAIN_SUBJECTS, help='training subjects held out in turn to '
                        'choose the gate margins (a joint class moves only where it helps on '
                        'each)')
    parser.add_argument('--margin-z', type=float, default=2.0,
                        help='standard errors by which a joint class\'s gain on the margin '
                        'subject must exceed 0 for it to move (0: any gain)')
    parser.add_argument('--flip-test', action=argparse.BooleanOptionalAction, default=False,
                        help="the refiners' rule's flip_test (the margin choice and the "
                        'refinement; on in the MPII benchmark, off here by default)')
    parser.add_argument('--workers', type=positive_int, default=default_workers(),
                        help='refiners trained side by side, one process each (default: '
                        'the cores this process may use; the results do not depend on it)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    path = osp.join(args.data, 'h36m_sh_step10.npz')
    if not osp.exists(path):
        sys.exit(f'{path} not found: Human3.6M is not redistributed with mmport; see this '
                 "script's docstring for how to build it")
    torch.set_num_threads(1)
    log = ProgressLog()

    d = np.load(path)
    pred, gt, subject = d['pred'].astype(np.float64), d['gt'].astype(np.float64), d['subject']
    train, test = np.isin(subject, TRAIN_SUBJECTS), np.isin(subject, TEST_SUBJECTS)
    boxes = extent_boxes(pred)

    def job(label: str, frames: np.ndarray, seed: int) -> TrainingJob:
        labelled = np.ones(gt[frames].shape[:2], bool)
        real = PoseSource(to_box_frame(gt[frames], boxes[frames]), labelled,
                          to_box_frame(pred[frames], boxes[frames]))
        gt_poses = PoseSource(to_box_frame(gt[frames], extent_boxes(gt[frames])), labelled)
        # Human3.6M's skeleton order is MPII's: the MPII refiner's layout fits
        return TrainingJob(label, refiner_config(args.embed_dim, args.num_heads,
                                                 args.quality_kind, args.flip_test),
                           gt_poses, real, None, seed, args.iters, args.batch_size,
                           SamplerConfig(real_prob=0.5, flip_prob=args.flip_prob))

    # leave one margin subject out at a time: each is a domain, and a joint
    # class moves only where its moves help on every one of them
    # (choose_gate_margins with domains): a gain on one subject is no
    # evidence for another. The inner refiners and the final one (on all
    # training subjects) are independent and train side by side.
    jobs = [job(f'without {s}', train & (subject != s), args.seed + 1000 + i)
            for i, s in enumerate(args.margin_subjects)] + [job('final', train, args.seed)]
    trained = train_refiners(jobs, args.workers, log)
    parts, validation = [], {}
    for i, (s, (inner, _)) in enumerate(zip(args.margin_subjects, trained)):
        val = subject == s
        rec, gain = reconstructions(inner, pred[val], boxes[val])
        # every joint moved: what training choices are judged by, apart
        # from the margins chosen on these very joints
        validation[s] = {'baseline': joint_report(pred[val], gt[val]),
                         'refined_without_gate': joint_report(rec, gt[val])}
        parts.append((gain, np.linalg.norm(pred[val] - gt[val], axis=-1),
                      np.linalg.norm(rec - gt[val], axis=-1),
                      np.full(val.sum(), i), np.unique(d['action'][val], return_inverse=True)[1]))
    gain, in_cost, rec_cost, domains, sequences = (torch.from_numpy(np.concatenate(x))
                                                   for x in zip(*parts))
    margins = choose_gate_margins(gain, in_cost, rec_cost, domains=domains, z=args.margin_z,
                                  clusters=sequences)
    log(f'gate margins chosen on {args.margin_subjects}: {format_margins(margins)}')
    model = trained[-1][0]
    with_margins(model, margins)
    refined = refine(model, pred[test], boxes[test])
    result = {'baseline': joint_report(pred[test], gt[test]),
              **{g: joint_report(r, gt[test]) for g, r in refined.items()},
              'test_frames': int(test.sum()), 'train_frames': int(train.sum()),
              # each detection is framed by its own keypoints' extent
              'frames': 'results',
              'train_seconds': sum(info['seconds'] for _, info in trained), 'seed': args.seed,
              'iters': args.iters, 'gate_margins': margins_json(margins),
              'gate_margins_chosen_on': list(args.margin_subjects), 'margin_z': args.margin_z,
              'flip_prob': args.flip_prob, 'validation': validation,
              'refiner': refiner_config(args.embed_dim, args.num_heads, args.quality_kind,
                                        args.flip_test),
              'seconds': log.elapsed()}
    for s in TEST_SUBJECTS:
        sel = subject[test] == s
        result[s] = {'baseline': joint_report(pred[test][sel], gt[test][sel]),
                     **{g: joint_report(r[sel], gt[test][sel]) for g, r in refined.items()}}
    os.makedirs(args.work_dir, exist_ok=True)
    out_json = osp.join(args.work_dir, 'h36m.json')
    with open(out_json, 'w') as f:
        json.dump(result, f, indent=2)
    b = result['baseline']
    lines = [f'{"": <24}{"detections":>12}{"margins":>12}{"margin 0":>12}{"no gate":>12}']
    for key in ('error_px', 'error_px_without_7_9') + tuple(
            f'PCK@{t}px{s}' for t in PCK_PIXELS for s in ('', '_without_7_9')):
        lines.append(f'{key: <24}{b[key]:>12.4f}'
                     + ''.join(f'{result[g][key]:>12.4f}' for g in GATES))
    for name in GATES:
        lines.append(f'per joint px ({name}): ' + ', '.join(
            f'{j}: {x:.1f}->{y:.1f}' for j, (x, y) in enumerate(
                zip(b['per_joint_px'], result[name]['per_joint_px']))))
    lines += [f'validation {s} (inner refiner, no gate), error without 7, 9: '
              f'{v["baseline"]["error_px_without_7_9"]:.4f} -> '
              f'{v["refined_without_gate"]["error_px_without_7_9"]:.4f}'
              for s, v in validation.items()]
    print('\nHuman3.6M S9/S11, score-free refiner on Stacked Hourglass detections\n'
          + '\n'.join(lines) + f'\ngate margins (chosen on {", ".join(args.margin_subjects)}; '
          f'"-" = inf): {format_margins(margins)}\nwrote {out_json}', flush=True)


if __name__ == '__main__':
    main()
