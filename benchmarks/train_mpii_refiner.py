"""Train the shipped score-free MPII refiner (``checkpoints/port_mpii16_*.pth``).

Trained on the MPII training persons' ground truth with the real error
vectors (box-size units) of the three published models on the validation
persons transplanted onto it, plus synthetic errors. No validation
ground-truth position enters training (only the error vectors, which the
issue allows), so the refiner can be scored on the validation set's
predictions. The checkpoint holds the refiner config (``meta.cfg``) that
``tools/refine_results.py`` builds it from.

The do-no-harm gate's margins, one per joint class
(:func:`mmport.models.do_no_harm.choose_gate_margins`, best PCKh@0.5 of the
joint class, then its error), are chosen on held-out data of this training
set: a refiner trained on four fifths of the training persons with the
error vectors of four fifths of the validation persons (both grouped by
image) refines the other training persons carrying the other validation
persons' error vectors, each scored against half the head size of the
person its error vector comes from. Still no validation position is used.

    python -m benchmarks.train_mpii_refiner --out checkpoints/port_mpii16_scorefree.pth
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from benchmarks.benchmark_mpii import (MODELS, MPIIData, build_refiner,  # noqa: E402
                                       choose_margins, format_margins, refiner_config)
from benchmarks.score_free_training import (UNIT_BOX, PoseSource, SamplerConfig,  # noqa: E402
                                            ScoreFreeSampler, add_training_arguments,
                                            train_score_free)
from mmport.datasets.grouped_folds import grouped_folds  # noqa: E402

# keypoint-similarity gains lie in [-1, 1], so a margin of 1 moves nothing:
# it stands for inf in the checkpoint's config text, which cannot hold inf
NEVER_MOVE = 1.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default='data/mpii/mpii_val_preds.npz')
    parser.add_argument('--out', required=True)
    add_training_arguments(parser, iters=3000)
    return parser.parse_args(argv)


def held_out_margins(data: MPIIData, args, repeats: int = 3) -> list:
    """Gate margins chosen on held-out training data (see the module
    docstring): a fifth of the training persons, each carrying ``repeats``
    error vectors of the held-out fifth of the validation persons."""
    val_persons = np.arange(len(data.gt))
    val_fold = grouped_folds([str(i) for i in data.image_id], 5, args.seed)
    train_fold = grouped_folds([str(i) for i in np.load(args.data)['train_image_id']], 5,
                               args.seed)
    donor_sets = {k: data.real(val_persons[sel], MODELS).error_vectors()
                  for k, sel in (('inner', val_fold != 0), ('held', val_fold == 0))}
    # each donor's PCKh tolerance in its box's units (half its head size)
    box = data.bbox[MODELS[0]]
    tol = 0.5 * data.head / (box[:, 2:] - box[:, :2]).max(1)
    held_tol = np.concatenate([tol[val_fold == 0]] * len(MODELS))
    inner_train = PoseSource(data.train.gt[train_fold != 0], data.train.labelled[train_fold != 0])
    # initial weights from the training seed, not from the process's
    # unseeded random state: the margins and the file are reproducible
    torch.manual_seed(args.seed + 1000)
    model = build_refiner(refiner_config(args.embed_dim, args.num_heads, args.quality_kind))
    sampler = ScoreFreeSampler(inner_train, None, model.metainfo['flip_indices'],
                               donor_sets['inner'], SamplerConfig(real_prob=0.0))
    info = train_score_free(model, sampler, args.iters, args.batch_size, seed=args.seed + 1000,
                            log=print)
    print(f'inner refiner trained in {info["seconds"]:.0f} s')
    rng = np.random.default_rng(args.seed)
    held = np.tile(np.flatnonzero(train_fold == 0), repeats)
    donor = rng.integers(len(donor_sets['held']), size=len(held))
    err = donor_sets['held'][donor]
    gt = data.train.gt[held]
    known = data.train.labelled[held] & np.isfinite(err).all(-1)
    inputs = gt + np.nan_to_num(err)
    return choose_margins(model, inputs, np.tile(np.array(UNIT_BOX), (len(held), 1)), gt,
                          known, held_tol[donor])


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    from mmengine.config import Config
    if args.quality_kind != 'keypoint_similarity':
        raise ValueError('the checkpoint writes inf margins as NEVER_MOVE, which holds for '
                         "quality_kind='keypoint_similarity' only")
    data = MPIIData(args.data)
    margins = held_out_margins(data, args)
    print(f'gate margins chosen on held-out training data ("-" = inf): '
          f'{format_margins(margins)}')
    donors = data.real(np.arange(len(data.gt)), MODELS).error_vectors()
    cfg = refiner_config(args.embed_dim, args.num_heads, args.quality_kind)
    cfg['test_cfg']['gate_margin'] = [m if np.isfinite(m) else NEVER_MOVE for m in margins]
    torch.manual_seed(args.seed)
    model = build_refiner(cfg)
    sampler = ScoreFreeSampler(data.train, None, model.metainfo['flip_indices'], donors,
                               SamplerConfig(real_prob=0.0))
    info = train_score_free(model, sampler, args.iters, args.batch_size, seed=args.seed,
                            log=print)
    command = 'python -m benchmarks.train_mpii_refiner ' + ' '.join(
        argv if argv is not None else sys.argv[1:])
    meta = dict(cfg=Config(dict(model=cfg)).pretty_text, command=command,
                train_seconds=info['seconds'], gate_margins_chosen=[
                    m if np.isfinite(m) else 'inf' for m in margins],
                training_data='MPII training ground truth (data/mpii train_gt) with the error '
                'vectors of Tompson et al., hourglass 1 and 8 stacks on MPII validation')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, args.out)
    print(f'wrote {args.out} ({info["seconds"]:.0f} s of training)')


if __name__ == '__main__':
    main()
