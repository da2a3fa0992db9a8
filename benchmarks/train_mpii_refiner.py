"""Train the shipped score-free MPII refiner (``checkpoints/port_mpii16_*.pth``).

Trained on the MPII training persons' ground truth with the real error
vectors (box-size units) of the three published models on the validation
persons transplanted onto it, plus synthetic errors. No validation
ground-truth position enters training (only the error vectors, which the
issue allows), so the refiner can be scored on the validation set's
predictions. The checkpoint holds the refiner config (``meta.cfg``) that
``tools/refine_results.py`` builds it from.

The do-no-harm gate moves only the joints that lie outside their
instance's box (the rule's ``gate.outside_box``, ``OUTSIDE_BOX_MARGIN``;
every joint class's margin ``'never'``). The file serves methods it has
not seen, and for those the held-out-model run of
:mod:`benchmarks.benchmark_mpii` (margins chosen leaving one training
model out) keeps every joint class where it is in nearly every refiner it
trains, while moving every joint the network expects to gain lowers a
method of another kind (BlazePose; docs/benchmarks.md).

    python -m benchmarks.train_mpii_refiner --out checkpoints/port_mpii16_scorefree.pth
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from benchmarks.benchmark_mpii import (MODELS, OUTSIDE_BOX_MARGIN, MPIIData,  # noqa: E402
                                       build_refiner, refiner_config)
from benchmarks.score_free_training import (SamplerConfig, ScoreFreeSampler,  # noqa: E402
                                            add_training_arguments, train_score_free)
from mmport.models.refinement_rule import NEVER  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default='data/mpii/mpii_val_preds.npz')
    parser.add_argument('--out', required=True)
    add_training_arguments(parser, iters=3000)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    from mmengine.config import Config
    data = MPIIData(args.data)
    donors = data.real(np.arange(len(data.gt)), MODELS).error_vectors()
    cfg = refiner_config(args.embed_dim, args.num_heads, args.quality_kind,
                         outside_box_margin=OUTSIDE_BOX_MARGIN)
    cfg['test_cfg']['rule']['gate']['margin'] = NEVER
    torch.manual_seed(args.seed)
    model = build_refiner(cfg)
    sampler = ScoreFreeSampler(data.train, None, model.metainfo['flip_indices'], donors,
                               SamplerConfig(real_prob=0.0, flip_prob=args.flip_prob))
    info = train_score_free(model, sampler, args.iters, args.batch_size, seed=args.seed,
                            log=print)
    command = 'python -m benchmarks.train_mpii_refiner ' + ' '.join(
        argv if argv is not None else sys.argv[1:])
    meta = dict(cfg=Config(dict(model=cfg)).pretty_text, command=command,
                train_seconds=info['seconds'],
                training_data='MPII training ground truth (data/mpii train_gt) with the error '
                'vectors of Tompson et al., hourglass 1 and 8 stacks on MPII validation')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, args.out)
    print(f'wrote {args.out} ({info["seconds"]:.0f} s of training)')


if __name__ == '__main__':
    main()
