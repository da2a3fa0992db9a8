"""Refine the results file of any pose estimation method with a PORT refiner.

    python tools/refine_results.py RESULTS --ann ANN_JSON --checkpoint REFINER.pth \
        --out REFINED [--score-thr 0.3] [--config CFG]

RESULTS is a COCO keypoint results json (image_id, category_id, keypoints,
score), an MMPose ``tools/test.py --dump`` pickle, or an MMPose 0.x test
output pickle; REFINED is written in the same format (atomically). Pickles
are read with a restricted unpickler (numpy and builtin data only). With
``--ann`` (a COCO-style annotation file) each instance is framed by its
matched annotation's box, and before/after errors (and COCO keypoint AP for
17-joint bodies) are printed.
"""
import argparse
import json
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmport.apis.offline_refinement import (BBOX_SOURCES, atomic_write,  # noqa: E402
                                            encode_results,
                                            load_coco_annotations, match_ground_truth,
                                            refine_arrays, refiner_boxes)
from mmport.apis.refiner_loading import load_refiner  # noqa: E402
from mmport.datasets.prediction_files import load_pose_results  # noqa: E402
from mmport.evaluation import coco_keypoint_ap, refinement_report  # noqa: E402
from mmport.utils import InputFileError, run_cli, safe_load_pickle  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('results', help='results file (.json or .pkl)')
    parser.add_argument('--checkpoint', required=True, help='PORT refiner checkpoint')
    parser.add_argument('--out', required=True, help='refined results file')
    parser.add_argument('--ann', help='COCO-style annotation file (boxes; ground truth)')
    parser.add_argument('--config', help='refiner config, if the checkpoint holds none')
    parser.add_argument('--score-thr', type=float, help='override the confidence threshold')
    parser.add_argument('--bbox-source', default='auto', choices=BBOX_SOURCES,
                        help='frame of each instance: matched annotation box, the results\' '
                        'own box, or the keypoints\' extent (auto: the first available of '
                        'annotation, --dump box, extent)')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    results = load_pose_results(args.results)
    refiner = load_refiner(args.checkpoint, args.config, args.device)
    thr = refiner.test_cfg['score_thr'] if args.score_thr is None else args.score_thr
    if len(results) and results.keypoints.shape[1] != refiner.num_keypoints:
        raise InputFileError(args.results, f'has {results.keypoints.shape[1]} keypoints per '
                             f'instance, the refiner {args.checkpoint} {refiner.num_keypoints}')
    coco = load_coco_annotations(args.ann) if args.ann else None
    match = match_ground_truth(results, coco) if coco else None
    boxes = refiner_boxes(results, match, thr, args.bbox_source)
    if len(results):
        refined, replaced = refine_arrays(refiner, results.keypoints, results.keypoint_scores,
                                          boxes, thr)
    else:  # an empty results file gives an empty refined file
        refined, replaced = results.keypoints, np.zeros(results.keypoint_scores.shape, bool)
    source = (json.load(open(args.results)) if results.format == 'coco_json'
              else safe_load_pickle(args.results))
    atomic_write(args.out, encode_results(results, source, refined, replaced))
    low = (results.keypoint_scores < thr).any(1) if len(results) else np.zeros(0, bool)
    unchanged = int((low & ~replaced.any(1)).sum())
    print(f'{args.out}: {len(results)} instances, {int(replaced.sum())} joints of '
          f'{int(replaced.any(1).sum())} instances refined (threshold {thr}); '
          f'{unchanged} instances with low-confidence joints passed through unchanged '
          '(degenerate box, non-finite values or too few confident joints)')

    if match is not None and (match.ann_index >= 0).any():
        m = match.ann_index >= 0
        anns = [match.annotations[a] for a in match.ann_index[m]]
        gt = np.array([a['keypoints'] for a in anns], np.float64).reshape(len(anns), -1, 3)
        if gt.shape[1] == refiner.num_keypoints:
            rep = refinement_report(results.keypoints[m], refined[m], gt[..., :2],
                                    gt[..., 2] > 0, replaced[m], gt[..., 2] == 1)
            print(f'matched {int(m.sum())} of {len(results)} instances to ground truth')
            for name in ('EPE', 'EPE_replaced'):
                print(f'  {name}: {rep["init"][name]:.3f} -> {rep["refined"][name]:.3f}')
        sigmas = refiner.metainfo.get('sigmas')
        if results.format == 'coco_json' and sigmas is not None and len(sigmas) == gt.shape[1]:
            # records of the annotation file's images with finite values only
            # (COCOeval asserts the former and cannot score the rest)
            image_ids = {img['id'] for img in coco['images']}
            keep = [i for i, r in enumerate(source) if r.get('image_id') in image_ids
                    and np.isfinite(results.keypoints[i]).all()
                    and np.isfinite(results.keypoint_scores[i]).all()
                    and np.isfinite(results.scores[i])]

            def records(kpts):
                return [dict(image_id=source[i]['image_id'],
                             category_id=source[i].get('category_id', 1),
                             score=float(results.scores[i]),
                             keypoints=np.concatenate([kpts[i], results.keypoint_scores[i][:, None]],
                                                      1).reshape(-1).tolist()) for i in keep]
            before_ap = coco_keypoint_ap(coco, records(results.keypoints), sigmas)['AP']
            after_ap = coco_keypoint_ap(coco, records(refined), sigmas)['AP']
            print(f'  COCO AP ({len(keep)} instances): {before_ap:.4f} -> {after_ap:.4f}')
    return 0


if __name__ == '__main__':
    run_cli(main)
