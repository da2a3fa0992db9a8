"""Explain one refinement: which joints a refined joint's reconstruction
relied on (PORT's attention over joints), drawn over the instance.

    python tools/explain_refinement.py RESULTS --checkpoint REFINER.pth \
        --ann ANN_JSON --image NAME_OR_INDEX [--joint J] [--image-root DIR] --out X.png

RESULTS is any results file ``tools/refine_results.py`` reads. ``--image`` is
an instance index or a substring of its image file name. The starred joint
(default: the replaced joint the refiner moved most) is linked to every
other joint by a line whose width and opacity grow with its attention,
averaged over heads and blocks.
"""
import argparse
import os.path as osp
import sys

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmport.apis import load_refiner  # noqa: E402
from mmport.apis.offline_refinement import (load_coco_annotations,  # noqa: E402
                                            match_ground_truth, refiner_boxes)
from mmport.datasets import load_pose_results  # noqa: E402
from mmport.utils import MMPortError, run_cli  # noqa: E402
from mmport.visualization import plot_explanation  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Explain a PORT refinement')
    parser.add_argument('results')
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--ann', help='COCO-style annotations (boxes, ground truth)')
    parser.add_argument('--image', default='0', help='instance index or image name substring')
    parser.add_argument('--joint', type=int, help='joint to explain (default: most moved)')
    parser.add_argument('--image-root', help='folder of the images, to draw on them')
    parser.add_argument('--score-thr', type=float)
    args = parser.parse_args(argv)

    results = load_pose_results(args.results)
    refiner = load_refiner(args.checkpoint)
    thr = refiner.test_cfg['score_thr'] if args.score_thr is None else args.score_thr
    coco = load_coco_annotations(args.ann) if args.ann else None
    match = match_ground_truth(results, coco) if coco else None
    boxes = refiner_boxes(results, match, thr)
    if args.image.isdigit():
        n = int(args.image)
    else:
        hits = [i for i, key in enumerate(results.image_keys) if args.image in key]
        if not hits and coco is not None:
            names = {str(img['id']): img['file_name'] for img in coco['images']}
            hits = [i for i, key in enumerate(results.image_keys)
                    if args.image in names.get(key, '')]
        if not hits:
            raise MMPortError(f'{args.results}: no instance of an image matching {args.image!r}')
        n = hits[0]
    if not 0 <= n < len(results):
        raise MMPortError(f'{args.results}: instance {n} out of range ({len(results)})')
    kpts = torch.from_numpy(results.keypoints[n:n + 1]).float()
    scores = torch.from_numpy(results.keypoint_scores[n:n + 1]).float()
    refined, replaced, attention = refiner.explain(
        kpts, scores, torch.from_numpy(boxes[n:n + 1]).float(), thr)
    refined, replaced = refined[0].numpy(), replaced[0].numpy()
    if not replaced.any():
        raise MMPortError(f'instance {n} has no joint below the threshold {thr} (or cannot be '
                          'refined): nothing to explain')
    moved = np.linalg.norm(refined - kpts[0].numpy(), axis=-1)
    joint = args.joint if args.joint is not None else int(np.argmax(np.where(replaced, moved, -1)))
    row = attention[0, :, joint].mean(0).numpy()

    gt = image = None
    if match is not None and match.ann_index[n] >= 0:
        ann = match.annotations[match.ann_index[n]]
        gt = np.reshape(ann['keypoints'], (-1, 3))[:, :2].astype(float)
        gt[np.reshape(ann['keypoints'], (-1, 3))[:, 2] == 0] = np.nan
    if args.image_root:
        name = results.image_keys[n]
        if results.format == 'coco_json' and coco is not None:
            name = {str(i['id']): i['file_name'] for i in coco['images']}.get(name, name)
        path = osp.join(args.image_root, osp.basename(name))
        if osp.exists(path):
            import mmcv
            image = mmcv.imread(path, channel_order='rgb')
    names = refiner.metainfo.get('keypoint_id2name')
    names = [names[i] for i in range(len(row))] if names else None
    plot_explanation(kpts[0].numpy(), refined, replaced, row, joint,
                     refiner.metainfo['skeleton_links'], args.out, names, image, gt,
                     title=f'{osp.basename(results.image_keys[n])}: refined '
                     f'{names[joint] if names else joint} moved {moved[joint]:.1f} px')
    top = [j for j in np.argsort(-row) if j != joint][:5]
    print(f'wrote {args.out}: instance {n}, joint {names[joint] if names else joint} '
          f'(score {scores[0, joint]:.2f}) moved {moved[joint]:.1f} px; most attended: '
          + ', '.join(f'{names[j] if names else j} {row[j]:.2f}' for j in top))
    return 0


if __name__ == '__main__':
    run_cli(main)
