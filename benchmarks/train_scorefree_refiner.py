"""Train ``checkpoints/port_lsp14_scorefree.pth``: a score-free LSP-14
refiner fitted on the real errors of the ten published LSP methods, with a
rule chosen for methods it never saw.

The recipe is the one ``benchmarks.benchmark_methods`` measures on methods
left out: ``mmport.apis.fit_refiner`` (``--scores none --hold-out method``)
from ``port_lsp14_pretrained.pth`` on the methods' predictions of half of
the LSP test images, each scored against its own labelling (person- or
observer-centric), the rule chosen by folds that hold out methods and images
together, the identity rule as the floor. The half is fixed and easy to
reproduce: images ``im1001`` .. ``im1500`` (``TRAIN_IMAGE_IDS``) train it;
``im1501`` .. ``im2000`` stay out, so that the file can be scored on them
(``benchmarks.benchmark_shipped``) and a new method's predictions of them.

    python -m benchmarks.train_scorefree_refiner [--workers 2]
"""
import argparse
import json
import os
import os.path as osp

from mmport.apis import fit_refiner
from mmport.utils import positive_int

from .benchmark_methods import lsp_annotations, lsp_methods
from .parallel_training import default_workers

OUT = 'checkpoints/port_lsp14_scorefree.pth'
# LSP test images im1001 .. im1500 (annotation image ids 1 .. 500)
TRAIN_IMAGE_IDS = range(1, 501)
COMMAND = 'python -m benchmarks.train_scorefree_refiner'


def training_files(work: str) -> tuple:
    """The ten methods' predictions of the training images (each record
    naming its method and the annotation it is scored against) and both
    labellings' annotations of those images: the two files' paths."""
    keep = set(TRAIN_IMAGE_IDS)
    records = [r for recs in lsp_methods().values() for r in recs if r['image_id'] in keep]
    coco = lsp_annotations()
    coco = dict(coco, images=[im for im in coco['images'] if im['id'] in keep],
                annotations=[a for a in coco['annotations'] if a['image_id'] in keep])
    os.makedirs(work, exist_ok=True)
    paths = osp.join(work, 'lsp_methods_train_results.json'), osp.join(work, 'lsp_train_ann.json')
    for path, data in zip(paths, (records, coco)):
        with open(path, 'w') as f:
            json.dump(data, f)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workers', type=positive_int, default=default_workers())
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args(argv)
    results, ann = training_files(osp.join('work_dirs', 'scorefree'))
    report = fit_refiner(results, ann, args.out, scores='none', hold_out='method', seed=0,
                         workers=args.workers, command=COMMAND)
    print(report.summary())


if __name__ == '__main__':
    main()
